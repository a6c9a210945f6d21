/*
 * Writing text into XML (the SVG charts of the plugins).
 */
#ifndef FARM_XML_H
#define FARM_XML_H

#include <stdio.h>

/* Writes `s` to `f` with <, >, & and " escaped, for XML text and attribute
 * values. Any thread; NULL writes nothing. */
void farm_xml_text(FILE *f, const char *s);

#endif
