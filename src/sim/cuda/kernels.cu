// The CUDA C that kernels.ptx corresponds to (the PTX is written by hand
// and kept in the repository, so building needs no CUDA toolkit). The
// embedded engine's `cuda` mode launches these for each scheduler step.

// Reads n 16-byte words of src once (a decode step streams the weights and
// the batch's KV cache). The store that never happens keeps the loads.
extern "C" __global__ void stream_bytes(const ulonglong2* src, unsigned long long n,
                                        unsigned long long* sink) {
    unsigned long long acc = 0;
    unsigned long long stride = (unsigned long long)blockDim.x * gridDim.x;
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
         i < n; i += stride) {
        ulonglong2 v = __ldg(&src[i]);
        acc ^= v.x ^ v.y;
    }
    if (acc == 0x9E3779B97F4A7C15ULL) sink[0] = acc;
}

// Runs iters rounds of two dependent fused multiply-adds per thread (a
// prefill's compute, sized from the prompt tokens).
extern "C" __global__ void prefill_compute(float* out, unsigned int iters) {
    float a = threadIdx.x * 0.001f, b = 1.0001f;
    for (unsigned int k = 0; k < iters; ++k) {
        a = fmaf(a, b, 1e-7f);
        b = fmaf(b, a, -1e-7f);
    }
    if (a == 12345.678f) out[blockIdx.x] = a + b;
}
