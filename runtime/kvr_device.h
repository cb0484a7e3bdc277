/* kvr_device.h -- the GPUs of this machine, for provenance: the profiler's device record and
 * gpu-check's versions. Name, SMs, clocks, memory, compute capability, and the versions of the
 * driver, the CUDA runtime linked in and NCCL. A build without CUDA sees no devices.
 *
 * Usage:   for (int32_t i = 0; i < kvr_device_count(); i++) {
 *              kvr_device_props p;
 *              if (kvr_device_props_get(i, &p, &err) == KVR_OK) printf("%s\n", p.name);
 *          }
 */
#ifndef KVR_DEVICE_H
#define KVR_DEVICE_H
#include "kvr_common.h"
#ifdef __cplusplus
extern "C" {
#endif

typedef struct kvr_device_props {
    char name[256];           /* "NVIDIA H100 80GB HBM3" (cudaDeviceProp.name) */
    int32_t n_sms;            /* streaming multiprocessors */
    int32_t cc_major, cc_minor; /* compute capability */
    double clock_mhz;         /* peak SM clock */
    double mem_clock_mhz;     /* peak memory clock */
    int64_t mem_bytes;        /* device memory */
    char driver_version[64];  /* the kernel module's ("580.65.06"), else the driver's CUDA
                                 version ("CUDA 13.0") */
    char cuda_version[32];    /* the CUDA runtime linked in: "13.0" */
    char nccl_version[32];    /* "2.28.9"; "" when built without NCCL */
} kvr_device_props;

/* Zeroed memory of bytes on GPU device (for harnesses that hand device buffers to a transport:
 * the transfer profiler). Errors: KVR_ERR_UNSUPPORTED (no CUDA), KVR_ERR_CUDA (the message gives
 * the size). kvr_device_free(NULL) is a no-op. */
KVR_API kvr_status kvr_device_alloc(int32_t device, size_t bytes, void **out, kvr_error *err);
KVR_API void kvr_device_free(void *p);
/* Make GPU device the calling thread's current one (cudaSetDevice): what a backend uploads
 * weights to and runs on. A rank thread of a device transport calls it with kvr_comm_device
 * before its weights are uploaded (prefill does). Errors: KVR_ERR_UNSUPPORTED, KVR_ERR_CUDA. */
KVR_API kvr_status kvr_device_use(int32_t device, kvr_error *err);
/* GPUs visible to this process; 0 without CUDA, a driver or a device. */
KVR_API int32_t kvr_device_count(void);
/* Properties of GPU device (0 <= device < kvr_device_count()).
 * Errors: KVR_ERR_UNSUPPORTED (built without CUDA), KVR_ERR_CUDA (no such device). */
KVR_API kvr_status kvr_device_props_get(int32_t device, kvr_device_props *out, kvr_error *err);

#ifdef __cplusplus
}
#endif
#endif /* KVR_DEVICE_H */
