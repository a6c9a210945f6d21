/* Seeded generator: xoshiro256** seeded through splitmix64. */
#include <math.h>

#include "farm/nn.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void farm_rng_seed(struct farm_rng *rng, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        rng->s[i] = splitmix64(&x);
}

uint64_t farm_rng_next(struct farm_rng *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double farm_rng_uniform(struct farm_rng *rng)
{
    return (double)(farm_rng_next(rng) >> 11) * 0x1.0p-53;
}

double farm_rng_normal(struct farm_rng *rng)
{
    /* 1 - u lies in (0, 1], so the logarithm is finite. */
    double u1 = 1.0 - farm_rng_uniform(rng);
    double u2 = farm_rng_uniform(rng);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586476925 * u2);
}

uint64_t farm_rng_below(struct farm_rng *rng, uint64_t n)
{
    /* Rejection sampling: drop the top partial bucket so every value has
     * the same number of preimages. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t v;
    do
        v = farm_rng_next(rng);
    while (v >= limit);
    return v % n;
}

void farm_rng_shuffle(struct farm_rng *rng, size_t *idx, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)farm_rng_below(rng, i);
        size_t t = idx[i - 1];
        idx[i - 1] = idx[j];
        idx[j] = t;
    }
}

void farm_rng_fork(struct farm_rng *parent, struct farm_rng *child)
{
    farm_rng_seed(child, farm_rng_next(parent));
}
