/* The balanced split: exact minimum-bottleneck contiguous partition. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "farm/pipeline_sched.h"

double farm_pipe_split_bottleneck(const double *cost, int n, int sections, const int *starts)
{
    double worst = 0.0;
    for (int k = 0; k < sections; k++) {
        int end = k + 1 < sections ? starts[k + 1] : n;
        double sum = 0.0;
        for (int i = starts[k]; i < end; i++)
            sum += cost[i];
        if (k == 0 || sum > worst)
            worst = sum;
    }
    return worst;
}

int farm_pipe_split_balanced(const double *cost, int n, int sections, int *starts,
                             double *bottleneck, struct farm_err *err)
{
    FARM_RETURN_ERROR_IF(sections < 1, err, FARM_EBADPARAM, "stages: expected >= 1, got %d",
                         sections);
    FARM_RETURN_ERROR_IF(sections > n, err, FARM_EBADPARAM,
                         "stages: %d sections need at least %d layers, the model has %d", sections,
                         sections, n);
    for (int i = 0; i < n; i++)
        FARM_RETURN_ERROR_IF(!(cost[i] >= 0.0) || isinf(cost[i]), err, FARM_EBADPARAM,
                             "layer %d: cost must be finite and >= 0", i);

    /* best[k * (n + 1) + i]: the smallest bottleneck for layers i..n-1 cut
     * into k non-empty sections (INFINITY when impossible). Section sums are
     * accumulated in layer order, exactly as farm_pipe_split_bottleneck
     * does, so the optimum found compares equal to any re-evaluation. */
    size_t w = (size_t)n + 1;
    double *best = malloc((size_t)(sections + 1) * w * sizeof(double));
    if (best == NULL)
        return farm_err_set(err, -ENOMEM, "out of memory for the split");
    for (size_t i = 0; i < (size_t)(sections + 1) * w; i++)
        best[i] = INFINITY;
    best[0 * w + (size_t)n] = 0.0;
    for (int k = 1; k <= sections; k++) {
        for (int i = n - 1; i >= 0; i--) {
            double sum = 0.0, b = INFINITY;
            for (int j = i + 1; j <= n; j++) { /* first section is i..j-1 */
                sum += cost[j - 1];
                double rest = best[(size_t)(k - 1) * w + (size_t)j];
                if (rest == INFINITY)
                    continue;
                double v = fmax(sum, rest);
                if (v < b)
                    b = v;
            }
            best[(size_t)k * w + (size_t)i] = b;
        }
    }
    double opt = best[(size_t)sections * w + 0];

    /* Rebuild front to back, taking each section as long as the optimum
     * still allows. */
    int i = 0;
    for (int k = sections; k >= 1; k--) {
        starts[sections - k] = i;
        double sum = 0.0;
        int pick = -1;
        for (int j = i + 1; j <= n; j++) {
            sum += cost[j - 1];
            if (sum > opt)
                break;
            double rest = best[(size_t)(k - 1) * w + (size_t)j];
            if (rest != INFINITY && fmax(sum, rest) <= opt)
                pick = j;
        }
        if (pick < 0) { /* cannot happen: opt is attained */
            free(best);
            return farm_err_set(err, FARM_ESTATE, "split reconstruction failed");
        }
        i = pick;
    }
    free(best);
    if (bottleneck != NULL)
        *bottleneck = opt;
    return 0;
}
