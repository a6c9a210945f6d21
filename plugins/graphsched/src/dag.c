/* Task DAGs with a cost matrix: building, finalizing, loading from YAML. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "farm/graphsched.h"
#include "farm/yamljson.h"

int farm_gs_dag_init(struct farm_gs_dag *d, int n, int p)
{
    if (!d || n < 1 || p < 1)
        return -EINVAL;
    memset(d, 0, sizeof *d);
    d->n = n;
    d->p = p;
    d->cost = calloc((size_t)n * (size_t)p, sizeof *d->cost);
    d->lat = calloc((size_t)p * (size_t)p, sizeof *d->lat);
    d->inv_bw = malloc((size_t)p * (size_t)p * sizeof *d->inv_bw);
    d->task_names = calloc((size_t)n, sizeof *d->task_names);
    d->proc_names = calloc((size_t)p, sizeof *d->proc_names);
    if (!d->cost || !d->lat || !d->inv_bw || !d->task_names || !d->proc_names) {
        farm_gs_dag_release(d);
        return -ENOMEM;
    }
    for (int i = 0; i < p * p; i++)
        d->inv_bw[i] = 1.0;
    return 0;
}

void farm_gs_dag_release(struct farm_gs_dag *d)
{
    if (!d)
        return;
    if (d->task_names)
        for (int i = 0; i < d->n; i++)
            free(d->task_names[i]);
    if (d->proc_names)
        for (int i = 0; i < d->p; i++)
            free(d->proc_names[i]);
    free(d->task_names);
    free(d->proc_names);
    free(d->cost);
    free(d->lat);
    free(d->inv_bw);
    free(d->edges);
    free(d->succ_off);
    free(d->succ);
    free(d->pred_off);
    free(d->pred);
    free(d->topo);
    free(d->topo_pos);
    memset(d, 0, sizeof *d);
}

int farm_gs_dag_add_edge(struct farm_gs_dag *d, int src, int dst, double data)
{
    if (src < 0 || dst < 0 || src >= d->n || dst >= d->n || src == dst || !(data >= 0) ||
        !isfinite(data))
        return -EINVAL;
    if (d->m == d->cap_edges) {
        int cap = d->cap_edges ? d->cap_edges * 2 : 16;
        struct farm_gs_edge *e = realloc(d->edges, (size_t)cap * sizeof *e);
        if (!e)
            return -ENOMEM;
        d->edges = e;
        d->cap_edges = cap;
    }
    d->edges[d->m++] = (struct farm_gs_edge){src, dst, data};
    return 0;
}

static const char *tname(const struct farm_gs_dag *d, int i, char *buf, size_t len)
{
    if (d->task_names && d->task_names[i])
        return d->task_names[i];
    snprintf(buf, len, "#%d", i);
    return buf;
}

/* A min-heap of task indices, for Kahn's algorithm with smallest index first. */
static void heap_push(int *h, int *len, int v)
{
    int i = (*len)++;
    h[i] = v;
    while (i > 0 && h[(i - 1) / 2] > h[i]) {
        int t = h[i];
        h[i] = h[(i - 1) / 2];
        h[(i - 1) / 2] = t;
        i = (i - 1) / 2;
    }
}

static int heap_pop(int *h, int *len)
{
    int top = h[0];
    h[0] = h[--(*len)];
    int i = 0;
    for (;;) {
        int l = 2 * i + 1, r = l + 1, s = i;
        if (l < *len && h[l] < h[s])
            s = l;
        if (r < *len && h[r] < h[s])
            s = r;
        if (s == i)
            break;
        int t = h[i];
        h[i] = h[s];
        h[s] = t;
        i = s;
    }
    return top;
}

static int cmp_edge(const void *a, const void *b)
{
    const struct farm_gs_edge *x = a, *y = b;
    if (x->src != y->src)
        return x->src < y->src ? -1 : 1;
    return (x->dst > y->dst) - (x->dst < y->dst);
}

int farm_gs_dag_finalize(struct farm_gs_dag *d, struct farm_err *err)
{
    char b1[32], b2[32];
    int n = d->n, m = d->m;
    for (int i = 0; i < n * d->p; i++)
        FARM_RETURN_ERROR_IF(!(d->cost[i] >= 0) || !isfinite(d->cost[i]), err, FARM_EBADSPEC,
                             "task %s: cost on processor %d must be a finite number >= 0",
                             tname(d, i / d->p, b1, sizeof b1), i % d->p);
    /* Sorting edges by (src, dst) makes adjacency order independent of the
     * order edges were added in, and exposes duplicates. */
    if (m > 1)
        qsort(d->edges, (size_t)m, sizeof *d->edges, cmp_edge);
    for (int e = 1; e < m; e++)
        FARM_RETURN_ERROR_IF(d->edges[e].src == d->edges[e - 1].src &&
                                 d->edges[e].dst == d->edges[e - 1].dst,
                             err, FARM_EBADSPEC, "duplicate edge %s -> %s",
                             tname(d, d->edges[e].src, b1, sizeof b1),
                             tname(d, d->edges[e].dst, b2, sizeof b2));
    free(d->succ_off);
    free(d->succ);
    free(d->pred_off);
    free(d->pred);
    free(d->topo);
    free(d->topo_pos);
    d->succ_off = calloc((size_t)n + 1, sizeof(int));
    d->pred_off = calloc((size_t)n + 1, sizeof(int));
    d->succ = malloc(((size_t)m + 1) * sizeof(int));
    d->pred = malloc(((size_t)m + 1) * sizeof(int));
    d->topo = malloc((size_t)n * sizeof(int));
    d->topo_pos = malloc((size_t)n * sizeof(int));
    int *indeg = calloc((size_t)n, sizeof(int));
    int *heap = malloc((size_t)n * sizeof(int));
    int *fill = calloc((size_t)n, sizeof(int));
    if (!d->succ_off || !d->pred_off || !d->succ || !d->pred || !d->topo || !d->topo_pos ||
        !indeg || !heap || !fill) {
        free(indeg);
        free(heap);
        free(fill);
        return farm_err_set(err, -ENOMEM, "out of memory");
    }
    for (int e = 0; e < m; e++) {
        d->succ_off[d->edges[e].src + 1]++;
        d->pred_off[d->edges[e].dst + 1]++;
    }
    for (int i = 0; i < n; i++) {
        d->succ_off[i + 1] += d->succ_off[i];
        d->pred_off[i + 1] += d->pred_off[i];
    }
    for (int e = 0; e < m; e++) {
        int s = d->edges[e].src;
        d->succ[d->succ_off[s] + fill[s]++] = e;
    }
    memset(fill, 0, (size_t)n * sizeof(int));
    for (int e = 0; e < m; e++) {
        int t = d->edges[e].dst;
        d->pred[d->pred_off[t] + fill[t]++] = e;
        indeg[t]++;
    }
    int hl = 0, done = 0;
    for (int i = 0; i < n; i++)
        if (!indeg[i])
            heap_push(heap, &hl, i);
    while (hl) {
        int v = heap_pop(heap, &hl);
        d->topo_pos[v] = done;
        d->topo[done++] = v;
        for (int k = d->succ_off[v]; k < d->succ_off[v + 1]; k++) {
            int t = d->edges[d->succ[k]].dst;
            if (--indeg[t] == 0)
                heap_push(heap, &hl, t);
        }
    }
    double sl = 0, sb = 0;
    for (int k = 0; k < d->p; k++)
        for (int l = 0; l < d->p; l++)
            if (k != l) {
                sl += d->lat[k * d->p + l];
                sb += d->inv_bw[k * d->p + l];
            }
    double pairs = (double)d->p * (double)(d->p - 1);
    d->mean_lat = pairs > 0 ? sl / pairs : 0;
    d->mean_inv_bw = pairs > 0 ? sb / pairs : 0;
    int cyc = -1;
    for (int i = 0; i < n && done < n; i++)
        if (indeg[i]) {
            cyc = i;
            break;
        }
    free(indeg);
    free(heap);
    free(fill);
    FARM_RETURN_ERROR_IF(cyc >= 0, err, FARM_ECYCLE, "the graph has a cycle through task %s",
                         tname(d, cyc, b1, sizeof b1));
    return 0;
}

double farm_gs_comm(const struct farm_gs_dag *d, int e, int k, int l)
{
    if (k == l)
        return 0.0;
    int x = k * d->p + l;
    return d->lat[x] + d->edges[e].data * d->inv_bw[x];
}

double farm_gs_mean_comm(const struct farm_gs_dag *d, int e)
{
    if (d->p < 2)
        return 0.0;
    return d->mean_lat + d->edges[e].data * d->mean_inv_bw;
}

double farm_gs_cp_min(const struct farm_gs_dag *d)
{
    double *f = calloc((size_t)d->n, sizeof *f), best = 0;
    if (!f)
        return NAN;
    for (int t = 0; t < d->n; t++) {
        int i = d->topo[t];
        double r = 0, w = INFINITY;
        for (int k = d->pred_off[i]; k < d->pred_off[i + 1]; k++)
            r = fmax(r, f[d->edges[d->pred[k]].src]);
        for (int k = 0; k < d->p; k++)
            w = fmin(w, d->cost[i * d->p + k]);
        f[i] = r + w;
        best = fmax(best, f[i]);
    }
    free(f);
    return best;
}

double farm_gs_seq_time(const struct farm_gs_dag *d)
{
    double best = INFINITY;
    for (int k = 0; k < d->p; k++) {
        double s = 0;
        for (int i = 0; i < d->n; i++)
            s += d->cost[i * d->p + k];
        best = fmin(best, s);
    }
    return best;
}

/* ---- YAML loading ---- */

static int find_task(const struct farm_gs_dag *d, const char *name)
{
    for (int i = 0; i < d->n; i++)
        if (d->task_names[i] && strcmp(d->task_names[i], name) == 0)
            return i;
    return -1;
}

static int load_tree(struct farm_yaml_doc *doc, struct farm_gs_dag *d, struct farm_err *err)
{
    json_t *root = farm_yaml_root(doc);
    if (!json_is_object(root))
        return farm_yaml_error(doc, root, err, FARM_EBADSPEC,
                               "expected a mapping with processors, tasks and edges");
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        if (strcmp(key, "processors") && strcmp(key, "tasks") && strcmp(key, "edges"))
            return farm_yaml_error(doc, val, err, FARM_EBADSPEC,
                                   "unknown key \"%s\" (expected processors, tasks, edges)",
                                   key);
    }
    json_t *procs = json_object_get(root, "processors");
    json_t *tasks = json_object_get(root, "tasks");
    json_t *edges = json_object_get(root, "edges");
    if (!json_is_array(procs) || json_array_size(procs) == 0)
        return farm_yaml_error(doc, procs ? procs : root, err, FARM_EBADSPEC,
                               "processors: expected a non-empty list of names");
    if (!json_is_array(tasks) || json_array_size(tasks) == 0)
        return farm_yaml_error(doc, tasks ? tasks : root, err, FARM_EBADSPEC,
                               "tasks: expected a non-empty list");
    if (edges && !json_is_array(edges))
        return farm_yaml_error(doc, edges, err, FARM_EBADSPEC, "edges: expected a list");
    int p = (int)json_array_size(procs), n = (int)json_array_size(tasks);
    int rc = farm_gs_dag_init(d, n, p);
    if (rc)
        return farm_err_set(err, rc, "%s: out of memory", farm_yaml_name(doc));
    for (int k = 0; k < p; k++) {
        json_t *pn = json_array_get(procs, (size_t)k);
        if (!json_is_string(pn))
            return farm_yaml_error(doc, pn, err, FARM_EBADSPEC,
                                   "processors[%d]: expected a name", k);
        for (int j = 0; j < k; j++)
            if (strcmp(d->proc_names[j], json_string_value(pn)) == 0)
                return farm_yaml_error(doc, pn, err, FARM_EBADSPEC,
                                       "processors[%d]: duplicate name \"%s\"", k,
                                       json_string_value(pn));
        d->proc_names[k] = strdup(json_string_value(pn));
        if (!d->proc_names[k])
            return farm_err_set(err, -ENOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        json_t *t = json_array_get(tasks, (size_t)i);
        json_t *nm = json_object_get(t, "name"), *c = json_object_get(t, "cost");
        if (!json_is_object(t))
            return farm_yaml_error(doc, t, err, FARM_EBADSPEC,
                                   "tasks[%d]: expected a mapping {name, cost}", i);
        json_object_foreach(t, key, val)
        {
            if (strcmp(key, "name") && strcmp(key, "cost"))
                return farm_yaml_error(doc, val, err, FARM_EBADSPEC,
                                       "tasks[%d]: unknown key \"%s\" (expected name, cost)",
                                       i, key);
        }
        if (!json_is_string(nm))
            return farm_yaml_error(doc, nm ? nm : t, err, FARM_EBADSPEC,
                                   "tasks[%d].name: expected a string", i);
        if (find_task(d, json_string_value(nm)) >= 0)
            return farm_yaml_error(doc, nm, err, FARM_EBADSPEC,
                                   "tasks[%d].name: duplicate task \"%s\"", i,
                                   json_string_value(nm));
        if (!json_is_array(c) || (int)json_array_size(c) != p)
            return farm_yaml_error(doc, c ? c : t, err, FARM_EBADSPEC,
                                   "tasks[%d].cost: expected a list of %d numbers (one per "
                                   "processor)",
                                   i, p);
        for (int k = 0; k < p; k++) {
            json_t *x = json_array_get(c, (size_t)k);
            if (!json_is_number(x) || !(json_number_value(x) >= 0) ||
                !isfinite(json_number_value(x)))
                return farm_yaml_error(doc, x, err, FARM_EBADSPEC,
                                       "tasks[%d].cost[%d]: expected a number >= 0", i, k);
            d->cost[i * p + k] = json_number_value(x);
        }
        d->task_names[i] = strdup(json_string_value(nm));
        if (!d->task_names[i])
            return farm_err_set(err, -ENOMEM, "out of memory");
    }
    size_t ne = edges ? json_array_size(edges) : 0;
    for (size_t e = 0; e < ne; e++) {
        json_t *x = json_array_get(edges, e);
        if (!json_is_array(x) || json_array_size(x) != 3 ||
            !json_is_string(json_array_get(x, 0)) || !json_is_string(json_array_get(x, 1)))
            return farm_yaml_error(doc, x, err, FARM_EBADSPEC,
                                   "edges[%zu]: expected [from, to, cost]", e);
        int s = find_task(d, json_string_value(json_array_get(x, 0)));
        int t = find_task(d, json_string_value(json_array_get(x, 1)));
        json_t *c = json_array_get(x, 2);
        if (s < 0)
            return farm_yaml_error(doc, json_array_get(x, 0), err, FARM_EBADSPEC,
                                   "edges[%zu]: unknown task \"%s\"", e,
                                   json_string_value(json_array_get(x, 0)));
        if (t < 0)
            return farm_yaml_error(doc, json_array_get(x, 1), err, FARM_EBADSPEC,
                                   "edges[%zu]: unknown task \"%s\"", e,
                                   json_string_value(json_array_get(x, 1)));
        if (s == t)
            return farm_yaml_error(doc, x, err, FARM_EBADSPEC,
                                   "edges[%zu]: a task cannot depend on itself", e);
        if (!json_is_number(c) || !(json_number_value(c) >= 0) ||
            !isfinite(json_number_value(c)))
            return farm_yaml_error(doc, c, err, FARM_EBADSPEC,
                                   "edges[%zu]: expected a communication cost >= 0", e);
        for (int f = 0; f < d->m; f++)
            if (d->edges[f].src == s && d->edges[f].dst == t)
                return farm_yaml_error(doc, x, err, FARM_EBADSPEC,
                                       "edges[%zu]: duplicate edge %s -> %s", e,
                                       d->task_names[s], d->task_names[t]);
        if ((rc = farm_gs_dag_add_edge(d, s, t, json_number_value(c))))
            return farm_err_set(err, rc, "out of memory");
    }
    rc = farm_gs_dag_finalize(d, err);
    if (rc)
        farm_err_prefix(err, "%s: ", farm_yaml_name(doc));
    return rc;
}

int farm_gs_dag_load(const char *path, const char *display, struct farm_gs_dag *d,
                     struct farm_err *err)
{
    struct farm_yaml_doc *doc = NULL;
    memset(d, 0, sizeof *d);
    int rc = farm_yaml_load_file(path, display, &doc, err);
    if (rc)
        return rc;
    rc = load_tree(doc, d, err);
    if (rc)
        farm_gs_dag_release(d);
    farm_yaml_free(doc);
    return rc;
}

json_t *farm_gs_sched_json(const struct farm_gs_dag *d, const struct farm_gs_sched *s,
                           const char *method)
{
    json_t *arr = json_array();
    json_t *o = json_pack("{s:s?, s:f, s:o}", "method", method, "makespan", s->makespan,
                          "tasks", arr);
    if (!o)
        return NULL;
    char b[32], pb[32];
    for (int i = 0; i < d->n; i++) {
        int k = s->proc[i];
        if (!d->proc_names[k])
            snprintf(pb, sizeof pb, "p%d", k);
        json_t *t = json_pack("{s:s, s:s, s:f, s:f}", "task", tname(d, i, b, sizeof b), "node",
                              d->proc_names[k] ? d->proc_names[k] : pb, "start", s->start[i],
                              "finish", s->finish[i]);
        if (!t || json_array_append_new(arr, t)) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}
