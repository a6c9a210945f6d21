/* Artifacts: schedule.json, candidates.json, gantt.svg. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "farm/xml.h"
#include "farm/graphsched_ops.h"

static int dump(const char *path, json_t *j, struct farm_err *err)
{
    if (!j)
        return farm_err_set(err, -ENOMEM, "out of memory");
    int rc = json_dump_file(j, path, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
    json_decref(j);
    return rc ? farm_err_set(err, -EIO, "%s: cannot write", path) : 0;
}

int farm_gs_write_schedule(const char *path, const struct farm_gs_opgraph *orig,
                           const struct farm_gs_result *r, const struct farm_gs_exec_stats *st,
                           struct farm_err *err)
{
    const struct farm_gs_opgraph *g = &r->graph;
    json_t *tasks = json_array();
    json_t *root = json_pack(
        "{s:s, s:s, s:f, s:o, s:o}", "candidate", r->cands[r->best].text, "method",
        farm_gs_method_name(r->best_method), "predicted_makespan", r->sched.makespan,
        "measured_makespan", st ? json_real(st->makespan) : json_null(), "tasks", tasks);
    for (int t = 0; root && t < r->sched.n; t++) {
        const struct farm_gs_op *op = &g->ops[t + g->ninputs];
        json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:f, s:f, s:o, s:o}", "task", op->name, "op",
                              orig->ops[op->origin].name, "kind", farm_gs_opkind_name(op->kind),
                              "node", r->dag.proc_names[r->sched.proc[t]], "start",
                              r->sched.start[t], "finish", r->sched.finish[t], "measured_start",
                              st ? json_real(st->start[t]) : json_null(), "measured_finish",
                              st ? json_real(st->finish[t]) : json_null());
        if (!o || json_array_append_new(tasks, o)) {
            json_decref(root);
            root = NULL;
        }
    }
    return dump(path, root, err);
}

int farm_gs_write_candidates(const char *path, const struct farm_gs_result *r,
                             struct farm_err *err)
{
    return dump(path, farm_gs_result_json(r), err);
}

int farm_gs_write_gantt(const char *path, const struct farm_gs_result *r,
                        const struct farm_gs_exec_stats *st, struct farm_err *err)
{
    static const char *const colour[FARM_GS_NCLASSES] = {"#4e79a7", "#59a14f", "#f28e2b",
                                                         "#bab0ac"};
    const struct farm_gs_opgraph *g = &r->graph;
    const struct farm_gs_sched *s = &r->sched;
    int p = r->dag.p, lanes = st ? 2 : 1;
    double span = s->makespan;
    if (st && st->makespan > span)
        span = st->makespan;
    if (!(span > 0))
        span = 1;
    const double left = 170, width = 900, lane_h = 22, row_h = lanes * lane_h + 14, top = 64;
    double height = top + p * row_h + 40;
    FILE *f = fopen(path, "w");
    if (!f)
        return farm_err_set(err, -errno, "%s: cannot write", path);
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
            "font-family=\"sans-serif\" font-size=\"12\">\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"#fff\"/>\n",
            left + width + 60, height);
    fprintf(f, "<text x=\"10\" y=\"20\" font-weight=\"bold\">%s: predicted %.6g s",
            farm_gs_method_name(r->best_method), s->makespan);
    if (st)
        fprintf(f, ", measured %.6g s", st->makespan);
    {
        char text[304];
        snprintf(text, sizeof text, "%.300s", r->cands[r->best].text);
        fprintf(f, "</text>\n<text x=\"10\" y=\"38\" font-size=\"10\" fill=\"#444\">"
                   "candidate #%d: ", r->best);
        farm_xml_text(f, text);
        fprintf(f, "%s</text>\n", strlen(r->cands[r->best].text) > 300 ? " ..." : "");
    }
    static const char *const cls_name[FARM_GS_NCLASSES] = {"matmul", "elementwise", "reduction",
                                                           "copy"};
    for (int k = 0; k < FARM_GS_NCLASSES; k++)
        fprintf(f,
                "<rect x=\"%.0f\" y=\"44\" width=\"10\" height=\"10\" fill=\"%s\"/>"
                "<text x=\"%.0f\" y=\"53\" font-size=\"10\">%s</text>\n",
                left + 110.0 * k, colour[k], left + 110.0 * k + 14, cls_name[k]);
    for (int k = 0; k < p; k++) {
        double y = top + k * row_h;
        fprintf(f, "<text x=\"10\" y=\"%.1f\" font-weight=\"bold\">", y + lane_h * 0.7);
        farm_xml_text(f, r->dag.proc_names[k]);
        fprintf(f, "</text>\n");
        for (int lane = 0; lane < lanes; lane++)
            fprintf(f,
                    "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" fill=\"#666\" "
                    "text-anchor=\"end\">%s</text>\n",
                    left - 6, y + lane * lane_h + lane_h * 0.65, lane ? "measured" : "predicted");
        fprintf(f,
                "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ccc\"/>\n",
                10.0, left + width, y + row_h - 6, y + row_h - 6);
        for (int t = 0; t < s->n; t++) {
            if (s->proc[t] != k)
                continue;
            const struct farm_gs_op *op = &g->ops[t + g->ninputs];
            const char *col = colour[farm_gs_opkind_class(op->kind)];
            for (int lane = 0; lane < lanes; lane++) {
                double a = lane ? st->start[t] : s->start[t];
                double b = lane ? st->finish[t] : s->finish[t];
                double x0 = left + width * a / span, w = width * (b - a) / span;
                fprintf(f,
                        "<rect x=\"%.2f\" y=\"%.1f\" width=\"%.2f\" height=\"%.1f\" "
                        "fill=\"%s\" stroke=\"#fff\" stroke-width=\"0.5\"%s><title>",
                        x0, y + lane * lane_h, w > 0.5 ? w : 0.5, lane_h - 2, col,
                        lane ? " fill-opacity=\"0.6\"" : "");
                farm_xml_text(f, op->name);
                fprintf(f, " (%s) %s %.6g..%.6g s</title></rect>\n",
                        farm_gs_opkind_name(op->kind), lane ? "measured" : "predicted", a, b);
            }
        }
    }
    double ay = top + p * row_h + 10;
    fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#000\"/>\n", left,
            left + width, ay, ay);
    for (int i = 0; i <= 4; i++)
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.3g s</text>\n",
                left + width * i / 4, ay + 16, span * i / 4);
    fprintf(f, "</svg>\n");
    int bad = ferror(f);
    if (fclose(f) || bad)
        return farm_err_set(err, -EIO, "%s: write failed", path);
    return 0;
}
