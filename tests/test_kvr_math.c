/* test_kvr_math.c -- runtime/kvr_math.h, the per-element formulas the CPU backend and the CUDA
 * kernels share, against libm in double: exp over its whole domain and its clamps, the RMSNorm
 * scale, the RoPE rotation (an isometry; quarter and half turns exact) and SwiGLU's element. The
 * GPU evaluates the same source (tests/test_cuda.c compares the backends end to end). */
#include "kvr_math.h"
#include "kvr_test.h"

static void test_expf(void) {
    /* the polynomial's own error is ~5.7e-6; the float argument reduction (x * log2 e) adds
     * ~ulp(x * log2 e) relative at large |x| */
    double worst = 0, worst_small = 0;
    for (int i = 0; i <= 200000; i++) {
        const float x = -87.0f + 175.0f * (float)i / 200000.0f;
        const double want = exp((double)x), got = kvr_expf(x);
        const double rel = fabs(got - want) / want;
        if (rel > worst) worst = rel;
        if (fabsf(x) <= 10.0f && rel > worst_small) worst_small = rel;
    }
    printf("kvr_expf: max rel err %.3g over [-10, 10], %.3g over [-87, 88]\n", worst_small, worst);
    KVR_CHECK(worst_small < 7e-6);
    KVR_CHECK(worst < 1.5e-5);
    KVR_CHECK(kvr_expf(0.0f) == 1.0f);
    KVR_CHECK(kvr_expf(1.0f) > 2.7182810f && kvr_expf(1.0f) < 2.7182830f);
    /* clamped outside [-87, 88]: finite, never 0 or inf, monotone at the edges */
    KVR_CHECK(kvr_expf(-1000.0f) == kvr_expf(-87.0f) && kvr_expf(-87.0f) > 0.0f);
    KVR_CHECK(kvr_expf(-INFINITY) == kvr_expf(-87.0f));
    KVR_CHECK(kvr_expf(1000.0f) == kvr_expf(88.0f) && isfinite(kvr_expf(88.0f)));
}

static void test_rmsnorm_scale(void) {
    /* x = (3, 4): mean of squares 12.5 */
    KVR_CHECK_NEAR(kvr_rmsnorm_scale(25.0f, 2, 0.0f), 1.0 / sqrt(12.5), 0, 1e-7);
    KVR_CHECK_NEAR(kvr_rmsnorm_scale(25.0f, 2, 1e-5f), 1.0 / sqrt(12.5 + 1e-5), 0, 1e-7);
    KVR_CHECK_NEAR(kvr_rmsnorm_scale(0.0f, 64, 1e-6f), 1.0 / sqrt(1e-6), 0, 1e-6);
    KVR_CHECK_NEAR(kvr_rmsnorm_scale(4096.0f, 4096, 0.0f), 1.0, 0, 1e-7);
}

static void test_rope_rotate(void) {
    float a = 1.0f, b = 0.0f;
    kvr_rope_rotate(&a, &b, 0.0f, 1.0f); /* quarter turn: (1, 0) -> (0, 1) */
    KVR_CHECK(a == 0.0f && b == 1.0f);
    kvr_rope_rotate(&a, &b, -1.0f, 0.0f); /* half turn */
    KVR_CHECK(a == 0.0f && b == -1.0f);
    double worst = 0;
    for (int i = 0; i < 1000; i++) {
        const double th = 0.37 * i, x = sin(1.3 * i), y = cos(0.7 * i);
        float fa = (float)x, fb = (float)y;
        kvr_rope_rotate(&fa, &fb, (float)cos(th), (float)sin(th));
        const double wa = x * cos(th) - y * sin(th), wb = x * sin(th) + y * cos(th);
        worst = fmax(worst, fmax(fabs(fa - wa), fabs(fb - wb)));
    }
    KVR_CHECK(worst < 1e-6);
}

static void test_silu_mul(void) {
    KVR_CHECK(kvr_silu_mul(0.0f, 5.0f) == 0.0f);
    double worst = 0;
    for (int i = 0; i <= 2000; i++) {
        const double g = -40.0 + 80.0 * i / 2000.0, u = 0.5 + 0.001 * i;
        const double want = g / (1.0 + exp(-g)) * u;
        worst = fmax(worst, fabs(kvr_silu_mul((float)g, (float)u) - want) / fmax(fabs(want), 1e-3));
    }
    printf("kvr_silu_mul: max rel err %.3g over gate [-40, 40]\n", worst);
    KVR_CHECK(worst < 1.5e-5);
    /* large negative gates: the clamped exp keeps it finite and ~0 */
    KVR_CHECK(fabsf(kvr_silu_mul(-200.0f, 1.0f)) < 1e-30f);
}

static const kvr_test_case cases[] = {
    {"expf", test_expf},
    {"rmsnorm_scale", test_rmsnorm_scale},
    {"rope_rotate", test_rope_rotate},
    {"silu_mul", test_silu_mul},
};
KVR_TEST_MAIN(cases)
