/*
 * farm/nn.h: the small numeric kit the model plugins share (pipeline,
 * rnnexit, graphsched, fedenc). Static PIC library target `farm_nn`.
 *
 * Conventions that hold for every function below:
 *
 *  - float32 everywhere, row-major. A batch is a 2-D tensor of `rows`
 *    samples by `cols` features. Every matrix product goes through CBLAS
 *    (OpenBLAS); nothing here starts threads of its own.
 *  - Functions that can fail return 0 or a negative code (-errno or a
 *    FARM_E* code from farm/error.h) and, where a message matters, fill a
 *    `struct farm_err *err` (NULL allowed). Out-parameters are written only
 *    on success. Shape mismatches between arguments are -EINVAL with a
 *    message naming both shapes.
 *  - Backward functions ACCUMULATE into parameter gradients (dW += ...),
 *    like PyTorch: zero them with the matching _zero_grad before a step.
 *    Input gradients (dX, dH, ...) are overwritten, never accumulated.
 *  - Determinism: with OPENBLAS_NUM_THREADS=1 (or farm_nn_blas_set_threads
 *    (1)) every function gives bitwise the same result for the same inputs,
 *    shapes and call order; no function reorders a reduction depending on
 *    timing. Reductions over the batch (bias gradients, loss sums) run in
 *    row order.
 *  - Thread-safety: objects are not locked. Calls on disjoint objects (for
 *    example two ranges of layers of one farm_mlp, see there) may run on
 *    different threads at once.
 */
#ifndef FARM_NN_H
#define FARM_NN_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "farm/error.h"

/* ------------------------------------------------------------------------
 * Seeded random numbers
 *
 * xoshiro256** (Blackman and Vigna, 2018) seeded through splitmix64: the
 * integer stream is the same on every platform for the same seed. Normal
 * deviates use the Box-Muller transform on two uniforms (one deviate per
 * call, nothing cached), so they also depend on libm's log/sqrt/cos.
 * ------------------------------------------------------------------------ */

struct farm_rng {
    uint64_t s[4];
};

/* Seeds `rng` from `seed` (any value, 0 included) via splitmix64. */
void farm_rng_seed(struct farm_rng *rng, uint64_t seed);

/* The next 64 random bits. */
uint64_t farm_rng_next(struct farm_rng *rng);

/* A uniform double in [0, 1) with 53 random bits. */
double farm_rng_uniform(struct farm_rng *rng);

/* A standard normal deviate (mean 0, standard deviation 1). */
double farm_rng_normal(struct farm_rng *rng);

/* A uniform integer in [0, n), without modulo bias. n must be > 0. */
uint64_t farm_rng_below(struct farm_rng *rng, uint64_t n);

/* Fisher-Yates shuffle of idx[0..n). */
void farm_rng_shuffle(struct farm_rng *rng, size_t *idx, size_t n);

/* Seeds `child` from the next output of `parent`: an independent stream,
 * e.g. one per client or per layer, reproducible from one seed. */
void farm_rng_fork(struct farm_rng *parent, struct farm_rng *child);

/* ------------------------------------------------------------------------
 * Tensors
 *
 * A tensor is a caller-owned struct describing float32 storage of up to
 * FARM_TENSOR_MAXDIM dimensions, row-major and contiguous. The 2-D view
 * used by every kernel is `rows` = shape[0] and `cols` = the product of the
 * remaining dimensions (a 1-D tensor of n has rows 1, cols n).
 *
 * An owning tensor (cap > 0) has 64-byte aligned storage allocated by
 * farm_tensor_init*; a view (cap == 0) borrows another tensor's storage and
 * must not outlive it. A zeroed struct ({0}) is a valid empty tensor.
 * Always change shapes through the functions here so rows/cols/shape stay
 * consistent.
 * ------------------------------------------------------------------------ */

#define FARM_TENSOR_MAXDIM 4
#define FARM_TENSOR_ALIGN 64

struct farm_tensor {
    float *data;
    size_t rows, cols;
    int ndim;
    size_t shape[FARM_TENSOR_MAXDIM];
    size_t cap; /* floats allocated; 0 for a view or an empty tensor */
};

/* Allocates a zero-filled rows x cols tensor. Returns 0 or -ENOMEM/-EINVAL.
 * `t` must not hold storage already (release it first). */
int farm_tensor_init(struct farm_tensor *t, size_t rows, size_t cols);

/* Allocates a zero-filled 1-D tensor of n floats (rows 1, cols n). */
int farm_tensor_init_1d(struct farm_tensor *t, size_t n);

/* Allocates a zero-filled tensor of `ndim` (1..FARM_TENSOR_MAXDIM) dims. */
int farm_tensor_init_shape(struct farm_tensor *t, int ndim, const size_t *shape);

/* Allocates `dst` with src's shape and copies src's values. */
int farm_tensor_clone(struct farm_tensor *dst, const struct farm_tensor *src);

/* Frees an owning tensor's storage and zeroes the struct. Views are only
 * zeroed. NULL is allowed. */
void farm_tensor_release(struct farm_tensor *t);

/* Number of floats (rows * cols). */
size_t farm_tensor_size(const struct farm_tensor *t);

/* Sets every element to 0 / to `v`. */
void farm_tensor_zero(struct farm_tensor *t);
void farm_tensor_fill(struct farm_tensor *t, float v);

/* Copies src's values into dst; both must have the same rows and cols. */
int farm_tensor_copy(struct farm_tensor *dst, const struct farm_tensor *src);

/* Changes shape[0] (and rows) to `rows`, keeping cols. An owning tensor
 * reallocates when rows*cols exceeds cap (existing values kept, new ones
 * zero); a view fails with -EINVAL when it would grow. Lets one buffer serve
 * batches of different sizes without reallocating in the hot path. */
int farm_tensor_resize_rows(struct farm_tensor *t, size_t rows);

/* Reinterprets the storage with a new shape of the same number of floats.
 * -EINVAL when the sizes differ. */
int farm_tensor_reshape(struct farm_tensor *t, int ndim, const size_t *shape);

/* Makes `view` a non-owning tensor over rows [first, first+count) of src
 * (no copy; contiguous). -EINVAL when the range is out of bounds. */
int farm_tensor_view_rows(const struct farm_tensor *src, size_t first, size_t count,
                          struct farm_tensor *view);

/* Makes `view` a non-owning rows x cols tensor over `data` (not freed). */
void farm_tensor_wrap(struct farm_tensor *view, float *data, size_t rows, size_t cols);

/* dst row i = src row idx[i], for i < n. dst must have n rows and src's
 * cols; every idx[i] < src->rows (else -EINVAL, nothing written).
 * Used for row compaction: keep only the samples still active. */
int farm_tensor_gather_rows(struct farm_tensor *dst, const struct farm_tensor *src,
                            const size_t *idx, size_t n);

/* dst row idx[i] = src row i (scatter_rows) or += src row i
 * (scatter_add_rows), for i < n in increasing i. src must have n rows and
 * dst's cols; every idx[i] < dst->rows. The inverse of gather_rows. */
int farm_tensor_scatter_rows(struct farm_tensor *dst, const struct farm_tensor *src,
                             const size_t *idx, size_t n);
int farm_tensor_scatter_add_rows(struct farm_tensor *dst, const struct farm_tensor *src,
                                 const size_t *idx, size_t n);

/* y += alpha * x (same rows and cols); via cblas_saxpy. */
int farm_tensor_axpy(struct farm_tensor *y, float alpha, const struct farm_tensor *x);

/* t *= alpha; via cblas_sscal. */
void farm_tensor_scale(struct farm_tensor *t, float alpha);

/* out[i] = index of the largest value in row i (first one on ties).
 * `out` holds t->rows entries. */
void farm_tensor_argmax_rows(const struct farm_tensor *t, int32_t *out);

/* True when a and b have the same shape and bitwise identical values. */
bool farm_tensor_equal(const struct farm_tensor *a, const struct farm_tensor *b);

/* Largest |a-b| over all elements (same rows and cols; else INFINITY). */
double farm_tensor_max_abs_diff(const struct farm_tensor *a, const struct farm_tensor *b);

/* Fill with uniform values in [lo, hi) / normal values N(mean, std^2),
 * drawn in storage order from `rng`. */
void farm_tensor_fill_uniform(struct farm_tensor *t, float lo, float hi, struct farm_rng *rng);
void farm_tensor_fill_normal(struct farm_tensor *t, float mean, float std, struct farm_rng *rng);

/* Weight initialisation. Xavier/Glorot uniform: U(-a, a) with
 * a = sqrt(6 / (fan_in + fan_out)). He/Kaiming normal: N(0, 2 / fan_in). */
enum farm_init {
    FARM_INIT_HE = 0,
    FARM_INIT_XAVIER = 1,
};
void farm_tensor_init_xavier(struct farm_tensor *t, size_t fan_in, size_t fan_out,
                             struct farm_rng *rng);
void farm_tensor_init_he(struct farm_tensor *t, size_t fan_in, struct farm_rng *rng);

/* ------------------------------------------------------------------------
 * Matrix products (CBLAS)
 * ------------------------------------------------------------------------ */

/* C = alpha * op(A) * op(B) + beta * C, op(X) = X or X^T (trans_*).
 * beta = 1 accumulates. Shapes are checked: op(A) is M x K, op(B) K x N,
 * C M x N; -EINVAL otherwise. One cblas_sgemm call. */
int farm_nn_gemm(bool trans_a, bool trans_b, float alpha, const struct farm_tensor *a,
                 const struct farm_tensor *b, float beta, struct farm_tensor *c);

/* The raw form: the same as cblas_sgemm(CblasRowMajor, ...). No checks. */
void farm_nn_sgemm(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, float alpha,
                   const float *a, size_t lda, const float *b, size_t ldb, float beta, float *c,
                   size_t ldc);

/* Sets / reads the number of threads OpenBLAS uses (process-wide). A
 * pipeline stage running on its own thread wants 1. */
void farm_nn_blas_set_threads(int n);
int farm_nn_blas_threads(void);

/* ------------------------------------------------------------------------
 * Activations (elementwise)
 *
 * relu, tanh, sigmoid, and exact gelu: x * Phi(x) = 0.5 x (1 + erf(x/sqrt2))
 * (PyTorch's default, not the tanh approximation). FARM_ACT_NONE is the
 * identity.
 * ------------------------------------------------------------------------ */

enum farm_act {
    FARM_ACT_NONE = 0,
    FARM_ACT_RELU,
    FARM_ACT_TANH,
    FARM_ACT_SIGMOID,
    FARM_ACT_GELU,
};

/* y = act(x). x and y have the same rows and cols; y may be x (in place). */
int farm_act_forward(enum farm_act act, const struct farm_tensor *x, struct farm_tensor *y);

/* dx = dy * act'(x), given the forward's x and y (both are needed: relu,
 * tanh and sigmoid use y, gelu uses x; an in-place forward may pass the
 * same tensor as x and y only for relu/tanh/sigmoid/none). dx may be dy. */
int farm_act_backward(enum farm_act act, const struct farm_tensor *x, const struct farm_tensor *y,
                      const struct farm_tensor *dy, struct farm_tensor *dx);

/* "none"/"identity"/"linear", "relu", "tanh", "sigmoid", "gelu" -> act.
 * Returns 0 or -EINVAL for an unknown name. */
int farm_act_parse(const char *name, enum farm_act *out);

/* The canonical name of `act` (static string). */
const char *farm_act_name(enum farm_act act);

/* Row-wise softmax, numerically stable (max subtracted). y may be x. */
int farm_nn_softmax_rows(const struct farm_tensor *x, struct farm_tensor *y);

/* ------------------------------------------------------------------------
 * Losses
 *
 * Both return the SUM over rows of the per-sample loss in *loss_sum (divide
 * by the number of samples for the mean), and write the gradient with
 * respect to their input scaled by `grad_scale` (pass 1.0f/N for the mean
 * over N samples; with micro-batches, N is the whole batch). Any output
 * pointer may be NULL to skip it.
 * ------------------------------------------------------------------------ */

enum farm_loss_kind {
    FARM_LOSS_SOFTMAX_CE = 0,
    FARM_LOSS_MSE = 1,
};

/* Softmax cross-entropy on `logits` (rows x classes) against class indices
 * labels[rows] in [0, classes). dlogits = (softmax - onehot) * grad_scale.
 * *correct = number of rows whose argmax equals the label. -EINVAL for a
 * label out of range. dlogits may be logits (in place). */
int farm_loss_softmax_ce(const struct farm_tensor *logits, const int32_t *labels, float grad_scale,
                         struct farm_tensor *dlogits, double *loss_sum, size_t *correct);

/* Mean squared error per sample: sum_j (pred-target)^2 / cols, summed over
 * rows (so loss_sum / rows equals PyTorch's MSELoss 'mean').
 * dpred = 2 (pred - target) / cols * grad_scale. dpred may be pred. */
int farm_loss_mse(const struct farm_tensor *pred, const struct farm_tensor *target,
                  float grad_scale, struct farm_tensor *dpred, double *loss_sum);

/* "softmax_cross_entropy" / "cross_entropy" / "mse" -> kind; -EINVAL else. */
int farm_loss_parse(const char *name, enum farm_loss_kind *out);
const char *farm_loss_name(enum farm_loss_kind kind);

/* ------------------------------------------------------------------------
 * Parameters
 *
 * A parameter is a named value tensor with its gradient (same shape). Lists
 * of them feed optimizers, safetensors files and federated averaging.
 * The tensors are borrowed from the layer that owns them.
 * (Named farm_nn_param so that it never meets the SDK's struct farm_param,
 * a plugin's parameter table: a plugin file may include both headers.)
 * ------------------------------------------------------------------------ */

#define FARM_PARAM_NAME_MAX 128

struct farm_nn_param {
    char name[FARM_PARAM_NAME_MAX]; /* e.g. "fc1.weight" */
    struct farm_tensor *value;
    struct farm_tensor *grad; /* may be NULL for a frozen/loaded-only tensor */
};

/* Zeroes every grad in the list. */
void farm_params_zero_grad(const struct farm_nn_param *params, size_t n);

/* Total number of floats in the values. */
size_t farm_params_count(const struct farm_nn_param *params, size_t n);

/* ------------------------------------------------------------------------
 * Dense layer: Y = X W + b, then an optional fused activation.
 *
 * W is in x out (row-major, so Y = X W needs no transpose; note PyTorch's
 * Linear stores out x in), b is 1-D of out.
 * ------------------------------------------------------------------------ */

struct farm_dense {
    size_t in, out;
    struct farm_tensor w, b;   /* in x out, [out] */
    struct farm_tensor dw, db; /* gradients, same shapes */
};

/* Allocates W, b (zero) and their gradients (zero). */
int farm_dense_init(struct farm_dense *d, size_t in, size_t out);
void farm_dense_release(struct farm_dense *d);

/* W from `init` (fan_in = in, fan_out = out), b = 0. */
void farm_dense_init_params(struct farm_dense *d, enum farm_init init, struct farm_rng *rng);

/* y = x W + b. x is rows x in, y rows x out (not x). One sgemm, then the
 * bias added row by row. */
int farm_dense_forward(const struct farm_dense *d, const struct farm_tensor *x,
                       struct farm_tensor *y);

/* Given x (the forward's input) and dy (rows x out):
 * dW += x^T dy, db += column sums of dy (in row order), and, when dx is not
 * NULL, dx = dy W^T (rows x in). Pass dx NULL for a first layer to save a
 * product. */
int farm_dense_backward(struct farm_dense *d, const struct farm_tensor *x,
                        const struct farm_tensor *dy, struct farm_tensor *dx);

void farm_dense_zero_grad(struct farm_dense *d);

/* Writes 2 parameters, "<prefix>.weight" and "<prefix>.bias", to out[0..2).
 * Returns the count (2). */
size_t farm_dense_params(struct farm_dense *d, const char *prefix, struct farm_nn_param *out);

/* ------------------------------------------------------------------------
 * GRU cell (PyTorch's formulation), one time step:
 *   r  = sigmoid(x Wx_r + bx_r + h Wh_r + bh_r)
 *   z  = sigmoid(x Wx_z + bx_z + h Wh_z + bh_z)
 *   n  = tanh(x Wx_n + bx_n + r * (h Wh_n + bh_n))
 *   h' = (1 - z) * n + z * h
 * Wx is in x 3H and Wh is H x 3H with column blocks [r | z | n]; bx and bh
 * are 1-D of 3H with the same blocks.
 * ------------------------------------------------------------------------ */

struct farm_gru {
    size_t in, hidden;
    struct farm_tensor wx, wh, bx, bh;
    struct farm_tensor dwx, dwh, dbx, dbh;
};

/* What backward needs from one forward step: copies of x and h, the gates,
 * and h Wh_n + bh_n. One cache per time step kept for BPTT. A cache is
 * caller-owned; init it once with the largest batch it will see. */
struct farm_gru_cache {
    struct farm_tensor x, h, r, z, n, hn;
};

int farm_gru_init(struct farm_gru *g, size_t in, size_t hidden);
void farm_gru_release(struct farm_gru *g);

/* All weights and biases U(-k, k), k = 1/sqrt(hidden) (PyTorch's default). */
void farm_gru_init_params(struct farm_gru *g, struct farm_rng *rng);

int farm_gru_cache_init(struct farm_gru_cache *c, const struct farm_gru *g, size_t max_rows);
void farm_gru_cache_release(struct farm_gru_cache *c);

/* h_next = GRU(x, h_prev). x is rows x in, h_prev and h_next rows x hidden
 * (h_next must not be h_prev). `cache` may be NULL (inference only);
 * otherwise it is filled for farm_gru_backward (rows <= its max_rows). */
int farm_gru_forward(const struct farm_gru *g, const struct farm_tensor *x,
                     const struct farm_tensor *h_prev, struct farm_tensor *h_next,
                     struct farm_gru_cache *cache);

/* Backward of one step given dh_next (rows x hidden, the total gradient
 * reaching h_next: from the loss and from step t+1). Accumulates dWx, dWh,
 * dbx, dbh; writes dx (rows x in) and dh_prev (rows x hidden) when not
 * NULL. */
int farm_gru_backward(struct farm_gru *g, const struct farm_gru_cache *cache,
                      const struct farm_tensor *dh_next, struct farm_tensor *dx,
                      struct farm_tensor *dh_prev);

void farm_gru_zero_grad(struct farm_gru *g);

/* "<prefix>.wx", "<prefix>.wh", "<prefix>.bx", "<prefix>.bh" to out[0..4);
 * returns 4. */
size_t farm_gru_params(struct farm_gru *g, const char *prefix, struct farm_nn_param *out);

/* ------------------------------------------------------------------------
 * LSTM cell, one time step:
 *   [i f g o] = x Wx + h Wh + b   (column blocks of 4H)
 *   i, f, o = sigmoid(.), g = tanh(.)
 *   c' = f * c + i * g,  h' = o * tanh(c')
 * Wx is in x 4H, Wh is H x 4H, b is 1-D of 4H (one bias).
 * ------------------------------------------------------------------------ */

struct farm_lstm {
    size_t in, hidden;
    struct farm_tensor wx, wh, b;
    struct farm_tensor dwx, dwh, db;
};

struct farm_lstm_cache {
    struct farm_tensor x, h, c, i, f, g, o, tc; /* tc = tanh(c') */
};

int farm_lstm_init(struct farm_lstm *l, size_t in, size_t hidden);
void farm_lstm_release(struct farm_lstm *l);

/* Weights U(-k, k), k = 1/sqrt(hidden); bias 0 except the forget block 1. */
void farm_lstm_init_params(struct farm_lstm *l, struct farm_rng *rng);

int farm_lstm_cache_init(struct farm_lstm_cache *c, const struct farm_lstm *l, size_t max_rows);
void farm_lstm_cache_release(struct farm_lstm_cache *c);

/* (h_next, c_next) = LSTM(x, h_prev, c_prev). Outputs must not alias the
 * inputs. `cache` may be NULL. */
int farm_lstm_forward(const struct farm_lstm *l, const struct farm_tensor *x,
                      const struct farm_tensor *h_prev, const struct farm_tensor *c_prev,
                      struct farm_tensor *h_next, struct farm_tensor *c_next,
                      struct farm_lstm_cache *cache);

/* Backward of one step. dh_next is required; dc_next may be NULL (zero:
 * the last step). Accumulates dWx, dWh, db; writes dx, dh_prev, dc_prev
 * when not NULL. */
int farm_lstm_backward(struct farm_lstm *l, const struct farm_lstm_cache *cache,
                       const struct farm_tensor *dh_next, const struct farm_tensor *dc_next,
                       struct farm_tensor *dx, struct farm_tensor *dh_prev,
                       struct farm_tensor *dc_prev);

void farm_lstm_zero_grad(struct farm_lstm *l);

/* "<prefix>.wx", "<prefix>.wh", "<prefix>.b" to out[0..3); returns 3. */
size_t farm_lstm_params(struct farm_lstm *l, const char *prefix, struct farm_nn_param *out);

/* ------------------------------------------------------------------------
 * FLOP counts (analytic, for reports such as "FLOPs saved")
 *
 * A multiply-add counts 2. Elementwise work counts 1 per element per
 * operation: bias add 1, relu 1, sigmoid/tanh 4, gelu 8 (forward; the
 * backward of an activation counts the same again). Backward of a product
 * counts both dX and dW products (4 * rows * in * out for dense).
 * ------------------------------------------------------------------------ */

double farm_flops_act(enum farm_act act, size_t elements);
double farm_flops_dense_forward(size_t rows, size_t in, size_t out, enum farm_act act);
double farm_flops_dense_backward(size_t rows, size_t in, size_t out, enum farm_act act);
double farm_flops_gru_forward(size_t rows, size_t in, size_t hidden);
double farm_flops_gru_backward(size_t rows, size_t in, size_t hidden);
double farm_flops_lstm_forward(size_t rows, size_t in, size_t hidden);
double farm_flops_lstm_backward(size_t rows, size_t in, size_t hidden);

/* ------------------------------------------------------------------------
 * Optimizers over a list of parameters
 *
 * SGD with momentum (PyTorch's form): v = mu v + g; p -= lr v.
 * Adam: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 *       p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps).
 * weight_decay adds wd * p to g first (L2). Updates are elementwise, so
 * one optimizer over all parameters and one per pipeline stage over that
 * stage's parameters give bitwise the same weights.
 * ------------------------------------------------------------------------ */

enum farm_optim_kind {
    FARM_OPTIM_SGD = 0,
    FARM_OPTIM_ADAM = 1,
};

struct farm_optim_config {
    enum farm_optim_kind kind;
    float lr;           /* > 0 */
    float momentum;     /* sgd, in [0, 1) */
    float beta1, beta2; /* adam, in [0, 1) */
    float eps;          /* adam, > 0 */
    float weight_decay; /* >= 0 */
};

/* Defaults: sgd lr 0.01 momentum 0; adam lr 0.001, betas 0.9/0.999,
 * eps 1e-8; weight decay 0. */
void farm_optim_config_default(struct farm_optim_config *cfg, enum farm_optim_kind kind);

struct farm_optim;

/* Creates an optimizer over params[0..n) (the list is copied; the tensors
 * are borrowed and must outlive it; every param needs a grad). State
 * (velocity, moments) starts at zero. -EINVAL on a bad config. */
int farm_optim_new(const struct farm_optim_config *cfg, const struct farm_nn_param *params, size_t n,
                   struct farm_optim **out, struct farm_err *err);

/* One update of every parameter from its current gradient. */
void farm_optim_step(struct farm_optim *o);

/* Number of steps taken so far. */
uint64_t farm_optim_steps(const struct farm_optim *o);

void farm_optim_free(struct farm_optim *o);

/* "sgd" / "adam" -> kind; -EINVAL else. */
int farm_optim_parse(const char *name, enum farm_optim_kind *out);

/* ------------------------------------------------------------------------
 * Data sets
 *
 * A data set is n samples: x (n x dim), and either class labels
 * (labels[n] in [0, classes)) or regression targets y (n x k), or both.
 * ------------------------------------------------------------------------ */

struct farm_dataset {
    struct farm_tensor x;
    struct farm_tensor y; /* regression targets; empty (rows 0) when none */
    int32_t *labels;      /* NULL when none; malloc'ed */
    size_t n;             /* == x.rows */
    size_t classes;       /* 0 when unlabeled */
};

/* Frees x, y and labels and zeroes the struct. NULL is allowed. */
void farm_dataset_release(struct farm_dataset *d);

/* Gaussian blobs (like scikit-learn's make_blobs): `classes` centers drawn
 * uniformly in [-10, 10)^dim, then n samples, sample i of class i % classes,
 * each coordinate N(center, spread^2). */
int farm_data_blobs(struct farm_dataset *out, size_t n, size_t dim, size_t classes, float spread,
                    uint64_t seed, struct farm_err *err);

/* Two interleaved spirals in 2-D, n samples, class i % 2. For a sample of
 * class c: t = sqrt(u) * turns * 2 pi (u uniform), point = (t cos(t + c
 * pi), t sin(t + c pi)) / (turns * 2 pi) + N(0, noise^2) per coordinate.
 * Coordinates lie roughly in [-1, 1]. turns > 0 (1.5 is classic). */
int farm_data_spirals(struct farm_dataset *out, size_t n, float noise, float turns, uint64_t seed,
                      struct farm_err *err);

/* FedProx synthetic(alpha, beta) (Li et al., "Federated Optimization in
 * Heterogeneous Networks", 2020, and its generator): 60-dim x, 10 classes,
 * one data set per client k:
 *   u_k ~ N(0, alpha^2), B_k ~ N(0, beta^2)      (alpha, beta are std devs,
 *                                                 as in the reference code)
 *   W_k (60x10), b_k (10) ~ N(u_k, 1) elementwise
 *   v_k ~ N(B_k, 1) per coordinate, x ~ N(v_k, Sigma), Sigma = diag(j^-1.2)
 *   y = argmax(softmax(x W_k + b_k))
 * samples[k] samples for client k; samples NULL draws each count as
 * floor(lognormal(4, 2)) + 50 from the generator, like the reference
 * (capped at 10^7).
 * `out` receives n_clients data sets (release each). */
#define FARM_FEDPROX_DIM 60
#define FARM_FEDPROX_CLASSES 10
int farm_data_fedprox_synthetic(struct farm_dataset *out, size_t n_clients, const size_t *samples,
                                double alpha, double beta, uint64_t seed, struct farm_err *err);

/* Reads a CSV file of numbers, one sample per line, through libarchive
 * (raw format, all filters: .csv, .csv.gz, .csv.zst, ... alike).
 * label_col: the column holding the integer class label (-1 for the last
 * column), or FARM_CSV_NO_LABEL. A first line that is not numeric is taken
 * as a header and skipped. classes = max label + 1. Errors name
 * path:line:col (a bad number, a short row, a negative label). */
#define FARM_CSV_NO_LABEL (-1000)
int farm_data_load_csv(const char *path, int label_col, struct farm_dataset *out,
                       struct farm_err *err);

/* Reads x from an .npy file (any float/int dtype, converted to float32; 2-D,
 * or 1-D taken as one column) and, when labels_path is not NULL, labels
 * from a 1-D integer .npy of the same length. */
int farm_data_load_npy(const char *x_path, const char *labels_path, struct farm_dataset *out,
                       struct farm_err *err);

/* Shuffles indices 0..n with `seed` and puts the first round(n *
 * test_fraction) in `test`, the rest in `train` (each in shuffled order).
 * test_fraction in (0, 1). */
int farm_data_split(const struct farm_dataset *d, double test_fraction, uint64_t seed,
                    struct farm_dataset *train, struct farm_dataset *test, struct farm_err *err);

/* Feature scaling fit on `train` and applied to both (test may be NULL):
 * x = (x - mean) / std per column (std 0 -> 1). */
int farm_data_standardize(struct farm_dataset *train, struct farm_dataset *test);

/* Copies samples order[first .. first+count) into the batch: xb gets count
 * rows (resized with farm_tensor_resize_rows), labels into lb[count] (when
 * both lb and d->labels are non-NULL), targets into yb (when non-NULL and
 * d->y is not empty). order NULL means identity. */
int farm_data_batch(const struct farm_dataset *d, const size_t *order, size_t first, size_t count,
                    struct farm_tensor *xb, int32_t *lb, struct farm_tensor *yb);

/* ------------------------------------------------------------------------
 * .npy files (format 1.0/2.0/3.0; little endian, C order only)
 * ------------------------------------------------------------------------ */

/* Reads an array of dtype <f4, <f8, |i1, <i2, <i4, <i8, |u1, <u2, <u4, <u8
 * or |b1 into a float32 tensor of its shape (ndim 1..4; 0-d arrays become
 * 1-D of one). Errors name the file and what is wrong (fortran order, big
 * endian, truncated data). */
int farm_npy_read(const char *path, struct farm_tensor *out, struct farm_err *err);

/* Reads a 1-D (or n x 1) integer array (any int dtype, or a float array of
 * whole numbers) into a malloc'ed int32 array. */
int farm_npy_read_i32(const char *path, int32_t **out, size_t *n, struct farm_err *err);

/* Writes t as <f4 (with t's shape) / values as a 1-D <i4 / doubles of the
 * given shape as <f8. Atomic: a temp file renamed over `path`. */
int farm_npy_write(const char *path, const struct farm_tensor *t, struct farm_err *err);
int farm_npy_write_i32(const char *path, const int32_t *v, size_t n, struct farm_err *err);
int farm_npy_write_f64(const char *path, const double *v, int ndim, const size_t *shape,
                       struct farm_err *err);

/* ------------------------------------------------------------------------
 * safetensors (https://huggingface.co/docs/safetensors): 8-byte little
 * endian header length, a JSON header {name: {dtype: "F32", shape: [...],
 * data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the data.
 * Tensors are written in list order, contiguous, 8-byte aligned header.
 * ------------------------------------------------------------------------ */

/* Writes params' values. `metadata` (a JSON object of string values) may
 * be NULL. Duplicate names are -EINVAL. Atomic (temp file + rename). */
int farm_safetensors_save(const char *path, const struct farm_nn_param *params, size_t n,
                          const json_t *metadata, struct farm_err *err);

/* Loads into existing tensors: every params[i].name must be in the file as
 * F32 with exactly params[i].value's shape (else FARM_EBADDATA naming the
 * tensor). Tensors in the file that are not in the list are an error too
 * unless allow_extra. Nothing is written to any tensor unless all checks
 * pass. */
int farm_safetensors_load(const char *path, const struct farm_nn_param *params, size_t n,
                          bool allow_extra, struct farm_err *err);

/* ------------------------------------------------------------------------
 * Model descriptions (YAML), through farm_base's yamljson:
 *
 *   name: digits-mlp            # optional
 *   input: 64                   # features per sample (or the first layer's in)
 *   layers:
 *     - {name: fc1, type: dense, out: 128, activation: relu}
 *     - {name: fc2, type: dense, in: 128, out: 10}
 *     - {name: act, type: activation, activation: tanh}   # a separate layer
 *   loss: softmax_cross_entropy  # or mse
 *   optimizer: {type: sgd, lr: 0.1, momentum: 0.9}   # or
 *              {type: adam, lr: 0.001, betas: [0.9, 0.999], eps: 1e-8}
 *              (weight_decay optional)
 *   batch_size: 64
 *   init: he                    # or xavier (default he)
 *   seed: 1                     # parameter init seed (default 0)
 *   data:                       # optional
 *     source: csv               # csv | npy | blobs | spirals
 *     path: data/digits.csv.gz  # csv: file; npy: x file
 *     labels: data/y.npy        # npy: labels file
 *     label_column: -1          # csv (default -1 = last)
 *     scale: 0.0625             # multiply x (default 1)
 *     standardize: false        # fit on train (default false)
 *     n: 1000                   # blobs/spirals samples
 *     dim: 2, classes: 3, spread: 1.0  # blobs
 *     noise: 0.1, turns: 1.5            # spirals
 *     test_fraction: 0.2        # default 0.2
 *     seed: 7                   # data and split seed (default 0)
 *
 * Layer names are unique and non-empty. A dense layer's `in` may be
 * omitted (taken from the previous layer or `input`); when given it must
 * match. Unknown keys are errors. Every error is FARM_EBADMODEL with
 * "FILE:LINE:COL: what was expected".
 * ------------------------------------------------------------------------ */

enum farm_layer_kind {
    FARM_LAYER_DENSE = 0,
    FARM_LAYER_ACT = 1,
};

#define FARM_LAYER_NAME_MAX 64

struct farm_layer_desc {
    char name[FARM_LAYER_NAME_MAX];
    enum farm_layer_kind kind;
    size_t in, out;    /* act layers: in == out == width of their input */
    enum farm_act act; /* dense: fused activation (NONE if absent) */
    int line, col;     /* where the layer's mapping starts */
};

enum farm_data_source {
    FARM_DATA_NONE = 0,
    FARM_DATA_CSV,
    FARM_DATA_NPY,
    FARM_DATA_BLOBS,
    FARM_DATA_SPIRALS,
};

struct farm_data_desc {
    enum farm_data_source source;
    char *path;        /* csv file / npy x file (as written in the YAML) */
    char *labels_path; /* npy labels */
    int label_column;
    double scale;
    bool standardize;
    size_t n, dim, classes;
    double spread, noise, turns;
    double test_fraction;
    uint64_t seed;
    int line, col; /* of the data mapping, for messages about loading it */
};

struct farm_model_desc {
    char *name;   /* "" when absent */
    char *file;   /* display name of the file, for messages */
    char *dir;    /* directory of the file as loaded ("." for parsed text) */
    size_t input; /* features per sample */
    size_t n_layers;
    struct farm_layer_desc *layers;
    enum farm_loss_kind loss;
    struct farm_optim_config optim;
    size_t batch_size;
    enum farm_init init;
    uint64_t seed;
    struct farm_data_desc data;
};

/* Parses and checks a model description. `display` names the file in
 * messages (NULL: path). On success *out is the caller's
 * (farm_model_desc_free). Errors: FARM_EBADMODEL "display:line:col: ..."
 * (unknown layer type, shape mismatch between consecutive layers, missing
 * or unknown key, bad value), or the YAML parser's error. */
int farm_model_desc_load(const char *path, const char *display, struct farm_model_desc **out,
                         struct farm_err *err);
int farm_model_desc_parse(const char *text, size_t len, const char *display,
                          struct farm_model_desc **out, struct farm_err *err);
void farm_model_desc_free(struct farm_model_desc *d);

/* Index of the layer called `name`, or -1. */
int farm_model_desc_find(const struct farm_model_desc *d, const char *name);

/* Output width of the model (the last layer's out). */
size_t farm_model_desc_output(const struct farm_model_desc *d);

/* Loads the data the description names: relative paths are resolved
 * against base_dir (NULL: the directory the file was loaded from, d->dir),
 * then the data are scaled, split (test_fraction, seed) and standardized as
 * described, and checked against the model (x width == input; labels <
 * output). For an MSE model over class labels, y gets one-hot rows of the
 * output width (labels are kept, so accuracy can still be measured). Errors name the model
 * file:line:col of the data mapping and the underlying cause. -ENOENT-like failures keep their
 * code. */
int farm_model_desc_load_data(const struct farm_model_desc *d, const char *base_dir,
                              struct farm_dataset *train, struct farm_dataset *test,
                              struct farm_err *err);

/* ------------------------------------------------------------------------
 * Sequential MLP built from a description
 *
 * Layers are indexed 0..n_layers-1 in description order. Forward and
 * backward run over any contiguous range [first, last) of layers, with the
 * per-micro-batch activations kept in a `struct farm_mlp_work` that the
 * caller owns: one work per micro-batch in flight. Running [0, k) then
 * [k, L) gives bitwise the same numbers as [0, L) (the same calls happen in
 * the same order), which is what pipeline sections rely on.
 *
 * Thread-safety: calls on disjoint layer ranges (each with its own works)
 * may run concurrently; a range's parameters and gradients are touched
 * only by calls on that range.
 * ------------------------------------------------------------------------ */

struct farm_mlp;
struct farm_mlp_work;

/* Builds the layers and initialises parameters from d->init and `seed`
 * (each layer from its own forked stream, in layer order, so the values do
 * not depend on how the model is later split). The description is copied
 * (d may be freed afterwards). */
int farm_mlp_new(const struct farm_model_desc *d, uint64_t seed, struct farm_mlp **out,
                 struct farm_err *err);
void farm_mlp_free(struct farm_mlp *m);

size_t farm_mlp_n_layers(const struct farm_mlp *m);
const struct farm_layer_desc *farm_mlp_layer(const struct farm_mlp *m, size_t i);
enum farm_loss_kind farm_mlp_loss_kind(const struct farm_mlp *m);
size_t farm_mlp_input(const struct farm_mlp *m);
size_t farm_mlp_output(const struct farm_mlp *m);

/* The dense layer at index i (NULL for an activation layer). */
struct farm_dense *farm_mlp_dense(struct farm_mlp *m, size_t i);

/* Writes the parameters of layers [first, last) to out (cap entries) in
 * layer order ("<layer>.weight", "<layer>.bias"); returns how many there are
 * (call with cap 0 to count). */
size_t farm_mlp_params(struct farm_mlp *m, size_t first, size_t last, struct farm_nn_param *out,
                       size_t cap);

void farm_mlp_zero_grad(struct farm_mlp *m, size_t first, size_t last);

/* A work area for layers [first, last) and up to max_rows rows. */
int farm_mlp_work_new(const struct farm_mlp *m, size_t first, size_t last, size_t max_rows,
                      struct farm_mlp_work **out);
void farm_mlp_work_free(struct farm_mlp_work *w);

/* Bytes of activation/gradient storage the work holds (for memory
 * reports). */
size_t farm_mlp_work_bytes(const struct farm_mlp_work *w);

/* Forward over the work's range. x is rows x in(first), rows <= max_rows.
 * x's data are referenced, not copied, and must stay unchanged until the
 * matching backward returns (the struct itself may be a temporary). *y (rows x out(last-1)) is
 * borrowed from the work until its next forward. */
int farm_mlp_forward(const struct farm_mlp *m, struct farm_mlp_work *w, const struct farm_tensor *x,
                     const struct farm_tensor **y);

/* Backward over the work's range after its forward: dy is the gradient
 * at the range's output (rows x out(last-1)). Accumulates the range's
 * parameter gradients. When dx is not NULL, *dx is set to the gradient at
 * the range's input (borrowed from the work until its next forward or
 * backward); with dx NULL the first layer skips that product. */
int farm_mlp_backward(struct farm_mlp *m, struct farm_mlp_work *w, const struct farm_tensor *dy,
                      const struct farm_tensor **dx);

/* The unsplit reference step (uses scratch kept in m: not concurrently
 * with other calls on m): zero grads; for each of `micro_batches`
 * consecutive row slices of (x, labels/targets) in order (slice k has
 * rows/M rows, plus one when k < rows%M; see farm_mlp_micro_slice):
 * forward [0, L), loss with grad_scale 1/x->rows, backward; then, when
 * optim is not NULL, one optimizer step. M must be in [1, rows]. loss_sum/correct are summed over
 * the batch (either may be NULL). `targets` is for MSE, labels for CE.
 * Uses works it keeps inside m (sized on first use). */
int farm_mlp_train_step(struct farm_mlp *m, struct farm_optim *optim, const struct farm_tensor *x,
                        const int32_t *labels, const struct farm_tensor *targets,
                        size_t micro_batches, double *loss_sum, size_t *correct);

/* The row range [*first, *first + *count) of micro-batch k of M over
 * `rows` rows, as farm_mlp_train_step cuts them. */
void farm_mlp_micro_slice(size_t rows, size_t m, size_t k, size_t *first, size_t *count);

/* Mean loss and accuracy (correct / n; 0 for MSE) over a data set, in
 * batches of batch_size rows, parameters unchanged. */
int farm_mlp_evaluate(struct farm_mlp *m, const struct farm_dataset *d, size_t batch_size,
                      double *mean_loss, double *accuracy);

/* Analytic FLOPs of layer i for `rows` rows (see the FLOP conventions). */
double farm_mlp_layer_flops(const struct farm_mlp *m, size_t i, size_t rows, bool backward);

/* Weights as safetensors ("<layer>.weight" in x out, "<layer>.bias"). load
 * requires every parameter with its exact shape. */
int farm_mlp_save(struct farm_mlp *m, const char *path, struct farm_err *err);
int farm_mlp_load(struct farm_mlp *m, const char *path, struct farm_err *err);

#endif
