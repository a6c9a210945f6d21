/* skips.svg: per step, the share of objects still active in each unit. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "farm/xml.h"
#include "rnnexit-internal.h"

int farm_rx_write_skips_svg(const struct farm_rx_exec *ex, const char *path, const char *title,
                            struct farm_err *err)
{
    static const char *const colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                         "#9467bd", "#8c564b", "#e377c2", "#17becf"};
    const struct farm_rx_model *m = ex->model;
    size_t steps = farm_rx_exec_activity_steps(ex);
    const double W = 720, H = 360, L = 60, R = 150, T = 40, Bm = 50;
    const double pw = W - L - R, ph = H - T - Bm;
    char tmp[4096];
    int w = snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (w < 0 || (size_t)w >= sizeof tmp)
        return farm_err_set(err, -ENAMETOOLONG, "%s: path too long", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return farm_err_set(err, -errno, "%s: cannot write: %s", tmp, farm_strerror(-errno));
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
            "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"12\">\n",
            W, H, W, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f, "<text x=\"%.0f\" y=\"22\" font-size=\"14\">", L);
    farm_xml_text(f, title ? title : "share of objects still active per unit");
    fprintf(f, "</text>\n");
    /* Axes, grid and ticks. */
    for (int i = 0; i <= 4; i++) {
        double y = T + ph - ph * i / 4.0;
        fprintf(f,
                "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n"
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%d%%</text>\n",
                L, y, L + pw, y, L - 6, y + 4, i * 25);
    }
    fprintf(f,
            "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n"
            "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n",
            L, T, L, T + ph, L, T + ph, L + pw, T + ph);
    size_t span = steps > 1 ? steps - 1 : 1;
    size_t tick = span <= 10 ? 1 : span <= 50 ? 5 : span <= 200 ? 20 : span / 10;
    for (size_t s = 0; s < steps; s += tick) {
        double x = L + pw * (double)s / (double)span;
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%zu</text>\n", x,
                T + ph + 16, s);
    }
    fprintf(f,
            "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">time step</text>\n"
            "<text x=\"14\" y=\"%.1f\" transform=\"rotate(-90 14 %.1f)\" "
            "text-anchor=\"middle\">objects still active</text>\n",
            L + pw / 2, H - 12, T + ph / 2, T + ph / 2);
    for (int u = 0; u < m->n_units; u++) {
        const char *color = colors[u % (int)(sizeof colors / sizeof colors[0])];
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", color);
        for (size_t s = 0; s < steps; s++) {
            uint64_t seen, active;
            farm_rx_exec_activity(ex, u, s, &seen, &active);
            double share = seen ? (double)active / (double)seen : 0;
            fprintf(f, "%s%.1f,%.1f", s ? " " : "", L + pw * (double)s / (double)span,
                    T + ph - ph * share);
        }
        fprintf(f, "\"/>\n");
        double ly = T + 10 + 18.0 * u;
        fprintf(f,
                "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                "stroke-width=\"2\"/>\n<text x=\"%.1f\" y=\"%.1f\">",
                L + pw + 12, ly, L + pw + 32, ly, color, L + pw + 38, ly + 4);
        farm_xml_text(f, m->units[u].name);
        fprintf(f, "</text>\n");
    }
    fprintf(f, "</svg>\n");
    int bad = ferror(f);
    if (fclose(f) || bad) {
        unlink(tmp);
        return farm_err_set(err, -EIO, "%s: write failed", tmp);
    }
    if (rename(tmp, path)) {
        int e = -errno;
        unlink(tmp);
        return farm_err_set(err, e, "%s: cannot rename into place: %s", path, farm_strerror(e));
    }
    return 0;
}
