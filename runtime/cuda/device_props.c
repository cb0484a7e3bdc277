/* device_props.c -- kvr_device.h on the CUDA runtime (and NCCL's version when built with it). */
#include "kvr_device.h"

#include <cuda_runtime_api.h>
#include <stdio.h>
#include <string.h>
#ifdef KVR_USE_NCCL
#include <nccl.h>
#endif

kvr_status kvr_device_alloc(int32_t device, size_t bytes, void **out, kvr_error *err) {
    *out = NULL;
    cudaError_t e = cudaSetDevice(device);
    if (e == cudaSuccess) e = cudaMalloc(out, bytes ? bytes : 1);
    if (e == cudaSuccess) e = cudaMemset(*out, 0, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        if (*out) cudaFree(*out);
        *out = NULL;
        return kvr_error_set(err, KVR_ERR_CUDA, "device %d: %zu bytes: %s", device, bytes,
                             cudaGetErrorString(e));
    }
    return KVR_OK;
}

kvr_status kvr_device_use(int32_t device, kvr_error *err) {
    cudaError_t e = cudaSetDevice(device);
    if (e != cudaSuccess)
        return kvr_error_set(err, KVR_ERR_CUDA, "device %d: %s", device, cudaGetErrorString(e));
    return KVR_OK;
}

void kvr_device_free(void *p) {
    if (p) cudaFree(p);
}

int32_t kvr_device_count(void) {
    int n = 0;
    return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

/* The kernel module's version from /proc/driver/nvidia/version ("... Kernel Module  580.65.06
 * ..."), or false. */
static bool dev_module_version(char *out, size_t len) {
    FILE *f = fopen("/proc/driver/nvidia/version", "r");
    if (!f) return false;
    char line[512];
    bool found = false;
    if (fgets(line, sizeof line, f)) {
        const char *k = strstr(line, "Kernel Module");
        if (k) {
            k += strlen("Kernel Module");
            while (*k == ' ') k++;
            size_t n = strcspn(k, " \t\n");
            if (n > 0 && n < len) {
                memcpy(out, k, n);
                out[n] = 0;
                found = true;
            }
        }
    }
    fclose(f);
    return found;
}

kvr_status kvr_device_props_get(int32_t device, kvr_device_props *out, kvr_error *err) {
    memset(out, 0, sizeof *out);
    struct cudaDeviceProp p;
    cudaError_t e = cudaGetDeviceProperties(&p, device);
    if (e != cudaSuccess)
        return kvr_error_set(err, KVR_ERR_CUDA, "device %d: %s", device, cudaGetErrorString(e));
    snprintf(out->name, sizeof out->name, "%s", p.name);
    out->n_sms = p.multiProcessorCount;
    out->cc_major = p.major, out->cc_minor = p.minor;
    out->mem_bytes = (int64_t)p.totalGlobalMem;
    int khz = 0;
    if (cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, device) == cudaSuccess)
        out->clock_mhz = khz / 1000.0;
    if (cudaDeviceGetAttribute(&khz, cudaDevAttrMemoryClockRate, device) == cudaSuccess)
        out->mem_clock_mhz = khz / 1000.0;
    int v = 0;
    if (!dev_module_version(out->driver_version, sizeof out->driver_version) &&
        cudaDriverGetVersion(&v) == cudaSuccess)
        snprintf(out->driver_version, sizeof out->driver_version, "CUDA %d.%d", v / 1000,
                 (v % 1000) / 10);
    if (cudaRuntimeGetVersion(&v) == cudaSuccess)
        snprintf(out->cuda_version, sizeof out->cuda_version, "%d.%d", v / 1000, (v % 1000) / 10);
#ifdef KVR_USE_NCCL
    if (ncclGetVersion(&v) == ncclSuccess) /* major*10000 + minor*100 + patch since 2.9 */
        snprintf(out->nccl_version, sizeof out->nccl_version, "%d.%d.%d", v / 10000,
                 (v % 10000) / 100, v % 100);
#endif
    return KVR_OK;
}
