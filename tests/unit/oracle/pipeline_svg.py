"""Independent reader of the pipeline plugin's SVG charts, for the unit tests.

Usage: pipeline_svg.py FILE.svg
Parses the file as XML (so a malformed chart fails here) and prints one JSON
object: how many forward and backward boxes the Gantt chart has (by fill
colour), the number of points of the loss polyline, and every <title>/<text>.
"""
import json
import sys
import xml.etree.ElementTree as ET

NS = "{http://www.w3.org/2000/svg}"
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == NS + "svg", root.tag
fwd = bwd = 0
boxes = []
for g in root.iter(NS + "g"):
    title = g.find(NS + "title")
    rect = g.find(NS + "rect")
    if title is None or rect is None:
        continue
    fill = rect.get("fill")
    if fill == "#4C78A8":
        fwd += 1
    elif fill == "#F58518":
        bwd += 1
    boxes.append({"title": title.text, "x": float(rect.get("x")),
                  "w": float(rect.get("width")), "y": float(rect.get("y"))})
points = 0
for p in root.iter(NS + "polyline"):
    points += len(p.get("points").split())
texts = [t.text for t in root.iter(NS + "text") if t.text]
print(json.dumps({"forward": fwd, "backward": bwd, "boxes": boxes,
                  "points": points, "texts": texts}))
