/* timeline.json (jansson), timeline.svg (Gantt chart) and loss.svg. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "farm/xml.h"
#include "farm/pipeline_sched.h"

static int open_out(const char *path, FILE **out, struct farm_err *err)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return farm_err_set(err, -errno, "%s: cannot write: %s", path, strerror(errno));
    *out = f;
    return 0;
}

static int close_out(FILE *f, const char *path, struct farm_err *err)
{
    int bad = ferror(f);
    if (fclose(f) != 0 || bad)
        return farm_err_set(err, -EIO, "%s: write failed", path);
    return 0;
}

static double earliest(const struct farm_pipe_event *ev, int n)
{
    double t0 = n > 0 ? ev[0].start : 0.0;
    for (int i = 1; i < n; i++)
        t0 = fmin(t0, ev[i].start);
    return t0;
}

int farm_pipe_timeline_write_json(const char *path, const struct farm_pipe_schedule *self,
                                  const struct farm_pipe_event *events,
                                  const char *const *stage_names, struct farm_err *err)
{
    int n = self->stages * self->per_stage;
    double t0 = earliest(events, n);
    json_t *root = json_object();
    json_t *evs = json_array();
    json_t *names = json_array();
    if (root == NULL || evs == NULL || names == NULL) {
        json_decref(root);
        json_decref(evs);
        json_decref(names);
        return farm_err_set(err, -ENOMEM, "out of memory building %s", path);
    }
    json_object_set_new(root, "schedule", json_string(farm_pipe_kind_name(self->kind)));
    json_object_set_new(root, "stages", json_integer(self->stages));
    json_object_set_new(root, "micro_batches", json_integer(self->micro));
    json_object_set_new(root, "unit", json_string("s"));
    json_object_set_new(root, "makespan", json_real(farm_pipe_makespan(events, n)));
    json_object_set_new(root, "bubble_measured",
                        json_real(farm_pipe_bubble(events, n, self->stages)));
    json_object_set_new(root, "bubble_formula",
                        json_real(farm_pipe_bubble_formula(self->stages, self->micro)));
    for (int s = 0; s < self->stages; s++) {
        char buf[32];
        const char *nm = stage_names ? stage_names[s] : NULL;
        if (nm == NULL) {
            snprintf(buf, sizeof(buf), "stage %d", s);
            nm = buf;
        }
        json_array_append_new(names, json_string(nm));
    }
    json_object_set_new(root, "stage_names", names);
    for (int i = 0; i < n; i++) {
        const struct farm_pipe_event *e = &events[i];
        json_t *o =
            json_pack("{s:i, s:i, s:s, s:f, s:f}", "stage", e->stage, "micro", e->micro, "op",
                      e->op == FARM_PIPE_F ? "F" : "B", "start", e->start - t0, "end", e->end - t0);
        if (o == NULL || json_array_append_new(evs, o) != 0) {
            json_decref(root);
            json_decref(evs);
            return farm_err_set(err, -ENOMEM, "out of memory building %s", path);
        }
    }
    json_object_set_new(root, "events", evs);
    int rc = json_dump_file(root, path, JSON_INDENT(1) | JSON_REAL_PRECISION(9));
    json_decref(root);
    if (rc != 0)
        return farm_err_set(err, -EIO, "%s: cannot write", path);
    return 0;
}

/* A tick step of 1, 2 or 5 times a power of ten giving about `want` ticks. */
static double nice_step(double range, int want)
{
    if (!(range > 0.0))
        return 1.0;
    double raw = range / want;
    double p = pow(10.0, floor(log10(raw)));
    double f = raw / p;
    return (f < 1.5 ? 1.0 : f < 3.5 ? 2.0 : f < 7.5 ? 5.0 : 10.0) * p;
}

int farm_pipe_timeline_write_svg(const char *path, const struct farm_pipe_schedule *self,
                                 const struct farm_pipe_event *events,
                                 const char *const *stage_names, struct farm_err *err)
{
    int S = self->stages, n = S * self->per_stage;
    double t0 = earliest(events, n);
    double span = farm_pipe_makespan(events, n);
    if (!(span > 0.0))
        span = 1e-9;
    const double left = 140, right = 30, top = 70, row = 40, plot_w = 1000;
    double height = top + row * S + 70;
    double width = left + plot_w + right;
    FILE *f = NULL;
    int rc = open_out(path, &f, err);
    if (rc != 0)
        return rc;

    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
            "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"12\">\n",
            width, height, width, height);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f,
            "<text x=\"%.0f\" y=\"24\" font-size=\"16\" font-weight=\"bold\">Pipeline "
            "schedule %s: %d stages, %d micro-batches, makespan %.3f ms</text>\n",
            left, farm_pipe_kind_name(self->kind), S, self->micro, span * 1e3);
    fprintf(f,
            "<text x=\"%.0f\" y=\"44\">bubble measured %.3f, formula (S-1)/(M+S-1) = %.3f"
            "</text>\n",
            left, farm_pipe_bubble(events, n, S), farm_pipe_bubble_formula(S, self->micro));
    /* Legend. */
    fprintf(f,
            "<rect x=\"%.0f\" y=\"33\" width=\"14\" height=\"14\" fill=\"#4C78A8\"/>"
            "<text x=\"%.0f\" y=\"44\">forward F(stage, m)</text>\n",
            left + 520, left + 538);
    fprintf(f,
            "<rect x=\"%.0f\" y=\"33\" width=\"14\" height=\"14\" fill=\"#F58518\"/>"
            "<text x=\"%.0f\" y=\"44\">backward B(stage, m)</text>\n",
            left + 700, left + 718);

    for (int s = 0; s < S; s++) {
        double y = top + row * s;
        char buf[32];
        const char *nm = stage_names ? stage_names[s] : NULL;
        if (nm == NULL) {
            snprintf(buf, sizeof(buf), "stage %d", s);
            nm = buf;
        }
        fprintf(f, "<rect x=\"%.0f\" y=\"%.1f\" width=\"%.0f\" height=\"%.0f\" fill=\"%s\"/>\n",
                left, y, plot_w, row, s % 2 ? "#f4f4f4" : "#fbfbfb");
        fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">", left - 8, y + row / 2 + 4);
        farm_xml_text(f, nm);
        fprintf(f, "</text>\n");
    }
    for (int i = 0; i < n; i++) {
        const struct farm_pipe_event *e = &events[i];
        double x = left + (e->start - t0) / span * plot_w;
        double w = (e->end - e->start) / span * plot_w;
        double y = top + row * e->stage + 5;
        const char *op = e->op == FARM_PIPE_F ? "F" : "B";
        fprintf(f,
                "<g><title>%s(%d,%d): %.3f to %.3f ms</title><rect x=\"%.2f\" y=\"%.1f\" "
                "width=\"%.2f\" height=\"%.0f\" fill=\"%s\" stroke=\"white\" "
                "stroke-width=\"0.5\"/>",
                op, e->stage, e->micro, (e->start - t0) * 1e3, (e->end - t0) * 1e3, x, y,
                w > 0.5 ? w : 0.5, row - 10, e->op == FARM_PIPE_F ? "#4C78A8" : "#F58518");
        if (w >= 14)
            fprintf(f,
                    "<text x=\"%.2f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"white\">%s%d"
                    "</text>",
                    x + w / 2, y + (row - 10) / 2 + 4, w >= 24 ? op : "", e->micro);
        fprintf(f, "</g>\n");
    }
    /* Time axis in milliseconds. */
    double axis_y = top + row * S;
    double ms = span * 1e3, step = nice_step(ms, 8);
    fprintf(f, "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"black\"/>\n", left,
            axis_y, left + plot_w, axis_y);
    for (double t = 0.0; t <= ms * (1 + 1e-9); t += step) {
        double x = left + t / ms * plot_w;
        fprintf(f,
                "<line x1=\"%.2f\" y1=\"%.1f\" x2=\"%.2f\" y2=\"%.1f\" stroke=\"black\"/>"
                "<text x=\"%.2f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n",
                x, axis_y, x, axis_y + 5, x, axis_y + 19, t);
    }
    fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"middle\">time in the step (ms)</text>\n",
            left + plot_w / 2, axis_y + 42);
    fprintf(f, "</svg>\n");
    return close_out(f, path, err);
}

int farm_pipe_loss_write_svg(const char *path, const double *loss, int n, const char *title,
                             struct farm_err *err)
{
    const double left = 80, right = 30, top = 50, plot_w = 800, plot_h = 400;
    double width = left + plot_w + right, height = top + plot_h + 60;
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; i++) {
        if (isfinite(loss[i])) {
            lo = fmin(lo, loss[i]);
            hi = fmax(hi, loss[i]);
        }
    }
    if (!isfinite(lo)) {
        lo = 0.0;
        hi = 1.0;
    }
    if (hi - lo < 1e-12) {
        hi += 0.5;
        lo -= 0.5;
    }
    double ystep = nice_step(hi - lo, 6);
    lo = floor(lo / ystep) * ystep;
    hi = ceil(hi / ystep) * ystep;
    double xmax = n > 1 ? n : 2;
    FILE *f = NULL;
    int rc = open_out(path, &f, err);
    if (rc != 0)
        return rc;
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
            "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"12\">\n",
            width, height, width, height);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f, "<text x=\"%.0f\" y=\"28\" font-size=\"16\" font-weight=\"bold\">", left);
    farm_xml_text(f, title ? title : "training loss");
    fprintf(f, "</text>\n");
    fprintf(f,
            "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" "
            "stroke=\"black\"/>\n",
            left, top, plot_w, plot_h);
    for (double v = lo; v <= hi + ystep * 1e-6; v += ystep) {
        double y = top + plot_h - (v - lo) / (hi - lo) * plot_h;
        fprintf(f,
                "<line x1=\"%.0f\" y1=\"%.2f\" x2=\"%.0f\" y2=\"%.2f\" stroke=\"#ddd\"/>"
                "<text x=\"%.0f\" y=\"%.2f\" text-anchor=\"end\">%g</text>\n",
                left, y, left + plot_w, y, left - 6, y + 4, fabs(v) < ystep * 1e-6 ? 0.0 : v);
    }
    double xstep = nice_step(xmax - 1, 8);
    if (xstep < 1)
        xstep = 1;
    for (double s = 1; s <= xmax + 1e-9; s += xstep) {
        double x = left + (s - 1) / (xmax - 1) * plot_w;
        fprintf(f,
                "<line x1=\"%.2f\" y1=\"%.0f\" x2=\"%.2f\" y2=\"%.0f\" stroke=\"black\"/>"
                "<text x=\"%.2f\" y=\"%.0f\" text-anchor=\"middle\">%g</text>\n",
                x, top + plot_h, x, top + plot_h + 5, x, top + plot_h + 19, s);
    }
    fprintf(f,
            "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">optimizer step</text>\n"
            "<text x=\"20\" y=\"%.0f\" text-anchor=\"middle\" transform=\"rotate(-90 20 %.0f)\">"
            "loss</text>\n",
            left + plot_w / 2, top + plot_h + 42, top + plot_h / 2, top + plot_h / 2);
    fprintf(f, "<polyline fill=\"none\" stroke=\"#4C78A8\" stroke-width=\"1.5\" points=\"");
    for (int i = 0; i < n; i++) {
        if (!isfinite(loss[i]))
            continue;
        double x = left + (double)i / (xmax - 1) * plot_w;
        double y = top + plot_h - (loss[i] - lo) / (hi - lo) * plot_h;
        fprintf(f, "%.2f,%.2f ", x, y);
    }
    fprintf(f, "\"/>\n</svg>\n");
    return close_out(f, path, err);
}
