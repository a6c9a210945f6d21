/* pipeline_bench: the farm side of bench/pipeline.sh.
 *
 *   pipeline_bench --mode unsplit|pipe [--width 1024] [--depth 8]
 *                  [--batch 256] [--threads 1] [--micro 1]
 *                  [--schedule gpipe|1f1b] [--split 4] [--steps 8]
 *                  [--repeat 3] [--warmup 2] [--pin 1] [--timeline DIR]
 *
 * Builds an MLP of `depth` dense width x width ReLU layers and a width -> 10
 * head, trains it on one fixed random batch with SGD (momentum 0.9), and
 * prints one JSON line: the median samples/s over `repeat` timings of
 * `steps` steps each (after `warmup` untimed steps), and for the pipeline
 * the measured bubble fraction beside (S-1)/(M+S-1), the executor's buffer
 * bytes and the process's peak RSS. unsplit runs farm_mlp_train_step with
 * `threads` BLAS threads; pipe runs 2 sections cut before layer split+1.
 * With --timeline, the last step's timeline.json and timeline.svg are
 * written into DIR. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "farm/pipeline.h"

struct opts {
    const char *mode;
    const char *timeline;
    int width, depth, batch, threads, micro, split, steps, repeat, warmup;
    int kind;
    int pin;
};

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int usage(void)
{
    fprintf(stderr, "usage: pipeline_bench --mode unsplit|pipe [--width N] [--depth N] "
                    "[--batch N] [--threads N] [--micro N] [--schedule gpipe|1f1b] "
                    "[--split N] [--steps N] [--repeat N] [--warmup N] [--pin 0|1] "
                    "[--timeline DIR]\n");
    return 2;
}

static int parse(int argc, char **argv, struct opts *o)
{
    *o = (struct opts){.mode = NULL,
                       .timeline = NULL,
                       .width = 1024,
                       .depth = 8,
                       .batch = 256,
                       .threads = 1,
                       .micro = 1,
                       .split = 4,
                       .steps = 8,
                       .repeat = 3,
                       .warmup = 2,
                       .kind = FARM_PIPE_1F1B,
                       .pin = 1};
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            return -1;
        const char *k = argv[i], *v = argv[++i];
        char *end;
        long n = strtol(v, &end, 10);
        int num = *end == '\0' && n > 0 && n < 1000000;
        if (strcmp(k, "--mode") == 0) {
            o->mode = v;
        } else if (strcmp(k, "--timeline") == 0) {
            o->timeline = v;
        } else if (strcmp(k, "--schedule") == 0) {
            if (farm_pipe_kind_parse(v, &o->kind, NULL) != 0)
                return -1;
        } else if (strcmp(k, "--pin") == 0) {
            o->pin = strcmp(v, "0") != 0;
        } else if (!num) {
            return -1;
        } else if (strcmp(k, "--width") == 0) {
            o->width = (int)n;
        } else if (strcmp(k, "--depth") == 0) {
            o->depth = (int)n;
        } else if (strcmp(k, "--batch") == 0) {
            o->batch = (int)n;
        } else if (strcmp(k, "--threads") == 0) {
            o->threads = (int)n;
        } else if (strcmp(k, "--micro") == 0) {
            o->micro = (int)n;
        } else if (strcmp(k, "--split") == 0) {
            o->split = (int)n;
        } else if (strcmp(k, "--steps") == 0) {
            o->steps = (int)n;
        } else if (strcmp(k, "--repeat") == 0) {
            o->repeat = (int)n;
        } else if (strcmp(k, "--warmup") == 0) {
            o->warmup = (int)n;
        } else {
            return -1;
        }
    }
    if (o->mode == NULL || (strcmp(o->mode, "unsplit") != 0 && strcmp(o->mode, "pipe") != 0))
        return -1;
    if (o->split >= o->depth + 1 || o->repeat > 64)
        return -1;
    return 0;
}

static char *model_yaml(const struct opts *o)
{
    size_t cap = 256 + (size_t)o->depth * 96;
    char *y = malloc(cap);
    if (y == NULL)
        return NULL;
    size_t at = (size_t)snprintf(y, cap, "name: bench-mlp\ninput: %d\nlayers:\n", o->width);
    for (int i = 0; i < o->depth; i++)
        at += (size_t)snprintf(y + at, cap - at,
                               "  - {name: fc%d, type: dense, out: %d, activation: relu}\n", i + 1,
                               o->width);
    snprintf(y + at, cap - at,
             "  - {name: head, type: dense, out: 10}\n"
             "loss: softmax_cross_entropy\n"
             "optimizer: {type: sgd, lr: 0.01, momentum: 0.9}\n"
             "batch_size: %d\n"
             "seed: 1\n",
             o->batch);
    return y;
}

int main(int argc, char **argv)
{
    struct opts o;
    if (parse(argc, argv, &o) != 0)
        return usage();
    struct farm_err err;
    char *yaml = model_yaml(&o);
    struct farm_model_desc *desc = NULL;
    struct farm_mlp *m = NULL;
    if (yaml == NULL || farm_model_desc_parse(yaml, strlen(yaml), "bench", &desc, &err) != 0 ||
        farm_mlp_new(desc, 1, &m, &err) != 0) {
        fprintf(stderr, "pipeline_bench: %s\n", err.msg);
        return 1;
    }
    free(yaml);

    struct farm_tensor x = {0};
    int32_t *labels = calloc((size_t)o.batch, sizeof(int32_t));
    if (labels == NULL || farm_tensor_init(&x, (size_t)o.batch, (size_t)o.width) != 0)
        return 1;
    struct farm_rng rng;
    farm_rng_seed(&rng, 42);
    farm_tensor_fill_normal(&x, 0.0f, 1.0f, &rng);
    for (int i = 0; i < o.batch; i++)
        labels[i] = (int32_t)farm_rng_below(&rng, 10);

    struct farm_pipe *p = NULL;
    struct farm_optim *opt = NULL;
    size_t L = farm_mlp_n_layers(m);
    if (strcmp(o.mode, "pipe") == 0) {
        size_t starts[2] = {0, (size_t)o.split};
        struct farm_pipe_options po = {
            .kind = o.kind, .micro_batches = o.micro, .stages = 2, .starts = starts, .pin = o.pin};
        if (farm_pipe_new(m, &desc->optim, &po, (size_t)o.batch, &p, &err) != 0) {
            fprintf(stderr, "pipeline_bench: %s\n", err.msg);
            return 1;
        }
    } else {
        size_t np = farm_mlp_params(m, 0, L, NULL, 0);
        struct farm_nn_param *params = calloc(np, sizeof(*params));
        if (params == NULL)
            return 1;
        farm_mlp_params(m, 0, L, params, np);
        if (farm_optim_new(&desc->optim, params, np, &opt, &err) != 0) {
            fprintf(stderr, "pipeline_bench: %s\n", err.msg);
            return 1;
        }
        free(params);
        farm_nn_blas_set_threads(o.threads);
    }

    double rates[64], busy = 0.0, span = 0.0, loss = 0.0;
    int nev = p ? 2 * farm_pipe_get_schedule(p)->per_stage : 0;
    for (int r = -1; r < o.repeat; r++) {
        int n = r < 0 ? o.warmup : o.steps;
        double t0 = now_s();
        for (int s = 0; s < n; s++) {
            int rc;
            if (p != NULL) {
                rc = farm_pipe_step(p, &x, labels, NULL, 1, &loss, NULL, NULL, &err);
                if (rc == 0 && r >= 0) {
                    const struct farm_pipe_event *ev = farm_pipe_events(p);
                    span += farm_pipe_makespan(ev, nev);
                    for (int i = 0; i < nev; i++)
                        busy += ev[i].end - ev[i].start;
                }
            } else {
                rc = farm_mlp_train_step(m, opt, &x, labels, NULL, (size_t)o.micro, &loss, NULL);
                if (rc != 0)
                    farm_err_set(&err, rc, "train step failed");
            }
            if (rc != 0) {
                fprintf(stderr, "pipeline_bench: %s\n", err.msg);
                return 1;
            }
        }
        if (r >= 0)
            rates[r] = (double)o.batch * o.steps / (now_s() - t0);
    }
    double sorted[64];
    memcpy(sorted, rates, sizeof(double) * (size_t)o.repeat);
    qsort(sorted, (size_t)o.repeat, sizeof(double), cmp_double);
    double median = o.repeat % 2 ? sorted[o.repeat / 2]
                                 : 0.5 * (sorted[o.repeat / 2 - 1] + sorted[o.repeat / 2]);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"mode\": \"%s\", \"width\": %d, \"batch\": %d, \"micro\": %d, \"threads\": %d, "
           "\"schedule\": \"%s\", \"samples_per_s\": %.2f, \"runs\": [",
           o.mode, o.width, o.batch, o.micro, p ? 2 : o.threads,
           p ? farm_pipe_kind_name(o.kind) : "none", median);
    for (int r = 0; r < o.repeat; r++)
        printf("%s%.2f", r ? ", " : "", rates[r]);
    printf("], \"loss\": %.6f", loss / o.batch);
    if (p != NULL)
        printf(", \"bubble_measured\": %.4f, \"bubble_formula\": %.4f, \"buffer_bytes\": %zu, "
               "\"pinned\": %s",
               span > 0 ? 1.0 - busy / (2.0 * span) : 0.0, farm_pipe_bubble_formula(2, o.micro),
               farm_pipe_buffer_bytes(p), farm_pipe_pinned(p) ? "true" : "false");
    printf(", \"peak_rss_bytes\": %ld}\n", ru.ru_maxrss * 1024L);

    if (p != NULL && o.timeline != NULL) {
        char path[4096];
        const char *names[2] = {"fc1..fc4", "fc5..head"};
        snprintf(path, sizeof(path), "%s/timeline.json", o.timeline);
        int rc = farm_pipe_timeline_write_json(path, farm_pipe_get_schedule(p), farm_pipe_events(p),
                                               o.split == 4 && o.depth == 8 ? names : NULL, &err);
        snprintf(path, sizeof(path), "%s/timeline.svg", o.timeline);
        if (rc == 0)
            rc = farm_pipe_timeline_write_svg(path, farm_pipe_get_schedule(p), farm_pipe_events(p),
                                              o.split == 4 && o.depth == 8 ? names : NULL, &err);
        if (rc != 0)
            fprintf(stderr, "pipeline_bench: %s\n", err.msg);
    }
    farm_pipe_free(p);
    farm_optim_free(opt);
    farm_tensor_release(&x);
    free(labels);
    farm_mlp_free(m);
    farm_model_desc_free(desc);
    return 0;
}
