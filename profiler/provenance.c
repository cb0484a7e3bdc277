/* provenance.c -- what a stored timing needs to be trusted later (CONVENTIONS.md section J):
 * the CPU as a device (model name, logical CPUs, memory, clock, BLAS build), the model as a
 * record with a content hash, and a run's provenance columns (backend, dtype, threads, ranks,
 * transport, BLAS, MPI library when transfers go over MPI). Linux /proc and /sys are read when
 * present; anything unknown stays empty or zero. */
#define _XOPEN_SOURCE 700 /* realpath */
#include "kvr_device.h"
#include "kvr_profiler.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef KVR_USE_MPI
#include <mpi.h>
#endif

/* Copy text into a fixed field, truncating. */
static void prof_copy(char *dst, size_t cap, const char *src) {
    if (!cap) return;
    size_t n = src ? strlen(src) : 0;
    if (n >= cap) n = cap - 1;
    if (n) memcpy(dst, src, n);
    dst[n] = 0;
}

/* The value of the first "key<spaces>: value" line of /proc/cpuinfo. */
static bool prof_cpuinfo(const char *key, char *out, size_t len) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return false;
    char line[512];
    bool found = false;
    const size_t kl = strlen(key);
    while (!found && fgets(line, sizeof line, f)) {
        if (strncmp(line, key, kl) != 0) continue;
        char *colon = strchr(line, ':');
        if (!colon) continue;
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t') v++;
        v[strcspn(v, "\n")] = 0;
        prof_copy(out, len, v);
        found = true;
    }
    fclose(f);
    return found;
}

void kvr_profile_device_cpu(kvr_db_device *d) {
    memset(d, 0, sizeof *d);
    prof_copy(d->kind, sizeof d->kind, "cpu");
    if (!prof_cpuinfo("model name", d->name, sizeof d->name)) prof_copy(d->name, sizeof d->name, "unknown CPU");
    if (gethostname(d->host, sizeof d->host) != 0) prof_copy(d->host, sizeof d->host, "unknown");
    d->host[sizeof d->host - 1] = 0;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    d->n_cores = n > 0 ? (int32_t)n : 0;
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    d->mem_bytes = pages > 0 && psz > 0 ? (int64_t)pages * psz : 0;
    d->clock_mhz = 0;
    FILE *f = fopen("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq", "r");
    long khz = 0;
    if (f) {
        if (fscanf(f, "%ld", &khz) != 1) khz = 0;
        fclose(f);
    }
    if (khz > 0) {
        d->clock_mhz = khz / 1000.0;
    } else {
        char mhz[64];
        if (prof_cpuinfo("cpu MHz", mhz, sizeof mhz)) d->clock_mhz = atof(mhz);
    }
    prof_copy(d->blas, sizeof d->blas, kvr_backend_get_info(kvr_backend_at(0)).library);
}

void kvr_profile_device(kvr_db_device *d, const kvr_backend *be) {
    kvr_profile_device_cpu(d);
    if (!be || kvr_backend_mem_space(be) != KVR_MEM_DEVICE) return;
    const kvr_backend_info bi = kvr_backend_get_info(be);
    char host[sizeof d->host];
    prof_copy(host, sizeof host, d->host);
    memset(d, 0, sizeof *d);
    prof_copy(d->kind, sizeof d->kind, "cuda");
    prof_copy(d->host, sizeof d->host, host);
    prof_copy(d->name, sizeof d->name, bi.device[0] ? bi.device : "unknown GPU");
    prof_copy(d->blas, sizeof d->blas, bi.library);
    kvr_device_props gp;
    kvr_error e;
    if (kvr_device_count() > 0 && kvr_device_props_get(0, &gp, &e) == KVR_OK) {
        prof_copy(d->name, sizeof d->name, gp.name);
        d->n_sms = gp.n_sms;
        d->clock_mhz = gp.clock_mhz;
        d->mem_bytes = gp.mem_bytes;
        prof_copy(d->driver_version, sizeof d->driver_version, gp.driver_version);
        prof_copy(d->cuda_version, sizeof d->cuda_version, gp.cuda_version);
        prof_copy(d->nccl_version, sizeof d->nccl_version, gp.nccl_version);
    }
}

// ----------------------------------------------------------------------------
// content hash: 64-bit, 8 bytes at a time (FNV-style mixing with a final avalanche)

typedef struct prof_hash {
    uint64_t h;
    uint64_t n;
} prof_hash;

static void prof_hash_bytes(prof_hash *ph, const unsigned char *p, size_t n) {
    uint64_t h = ph->h;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
    }
    for (; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    ph->h = h;
    ph->n += n;
}

static uint64_t prof_hash_final(const prof_hash *ph) {
    uint64_t h = ph->h ^ ph->n;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

static kvr_status prof_hash_file(prof_hash *ph, const char *path, kvr_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return kvr_error_set(err, KVR_ERR_IO, "hash %s: cannot open", path);
    enum { BUF = 1 << 20 };
    unsigned char *buf = malloc(BUF);
    if (!buf) {
        fclose(f);
        return kvr_error_set(err, KVR_ERR_NOMEM, "hash %s: out of memory", path);
    }
    size_t n;
    while ((n = fread(buf, 1, BUF, f)) > 0) prof_hash_bytes(ph, buf, n);
    bool bad = ferror(f) != 0;
    free(buf);
    fclose(f);
    if (bad) return kvr_error_set(err, KVR_ERR_IO, "hash %s: read error", path);
    return KVR_OK;
}

static int prof_str_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* config.json and *.safetensors of an HF directory, in name order. */
static kvr_status prof_hash_dir(prof_hash *ph, const char *dir, kvr_error *err) {
    DIR *d = opendir(dir);
    if (!d) return kvr_error_set(err, KVR_ERR_IO, "hash %s: cannot open directory", dir);
    char *names[512];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 512) {
        const char *nm = e->d_name;
        size_t l = strlen(nm);
        if (strcmp(nm, "config.json") == 0 || (l > 12 && strcmp(nm + l - 12, ".safetensors") == 0)) {
            names[n] = malloc(l + 1);
            if (!names[n]) break;
            memcpy(names[n++], nm, l + 1);
        }
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, prof_str_cmp);
    kvr_status st = KVR_OK;
    for (int i = 0; i < n; i++) {
        char path[1200];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (st == KVR_OK) {
            prof_hash_bytes(ph, (const unsigned char *)names[i], strlen(names[i]));
            st = prof_hash_file(ph, path, err);
        }
        free(names[i]);
    }
    return st;
}

kvr_status kvr_profile_model_record(const kvr_model *m, const char *source, uint64_t seed,
                                    int32_t layers, kvr_db_model *out, kvr_error *err) {
    const kvr_model_config *cfg = kvr_model_get_config(m);
    memset(out, 0, sizeof *out);
    prof_copy(out->name, sizeof out->name, cfg->name);
    prof_copy(out->arch, sizeof out->arch, cfg->arch);
    out->n_layers = cfg->n_layers;
    out->d_model = cfg->d_model;
    out->n_heads = cfg->n_heads;
    out->n_kv_heads = cfg->n_kv_heads;
    out->head_dim = cfg->head_dim;
    out->d_ff = cfg->d_ff;
    out->vocab_size = cfg->vocab_size;
    out->max_context = cfg->max_context;
    out->rope_theta = cfg->rope_theta;
    out->tied_embeddings = cfg->tied_embeddings;
    out->kv_bytes_per_token = (int64_t)kvr_model_kv_bytes_per_token(cfg);
    prof_hash ph = {0xcbf29ce484222325ull, 0};
    struct stat sb;
    if (source && stat(source, &sb) == 0) {
        char real[1024];
        prof_copy(out->source, sizeof out->source, realpath(source, real) ? real : source);
        if (S_ISDIR(sb.st_mode)) {
            KVR_TRY(prof_hash_dir(&ph, source, err));
        } else {
            /* a config.json inside an HF directory: hash the directory */
            size_t l = strlen(source);
            if (l >= 11 && strcmp(source + l - 11, "config.json") == 0) {
                char dir[1024];
                prof_copy(dir, sizeof dir, source);
                char *slash = strrchr(dir, '/');
                if (slash) *slash = 0; else prof_copy(dir, sizeof dir, ".");
                KVR_TRY(prof_hash_dir(&ph, dir, err));
            } else {
                KVR_TRY(prof_hash_file(&ph, source, err));
            }
        }
    } else {
        char id[256];
        snprintf(id, sizeof id, "preset:%s:seed=%llu:layers=%d", source ? source : cfg->name,
                 (unsigned long long)seed, cfg->n_layers);
        snprintf(out->source, sizeof out->source, "preset:%s", source ? source : cfg->name);
        (void)layers;
        prof_hash_bytes(&ph, (const unsigned char *)id, strlen(id));
    }
    snprintf(out->content_hash, sizeof out->content_hash, "%016llx",
             (unsigned long long)prof_hash_final(&ph));
    return KVR_OK;
}

void kvr_profile_run_provenance(kvr_db_run *run, const kvr_db_device *dev,
                                const kvr_profile_params *p) {
    const kvr_backend_info bi = kvr_backend_get_info(p->backend ? p->backend : kvr_backend_at(0));
    prof_copy(run->backend, sizeof run->backend, bi.name);
    prof_copy(run->dtype, sizeof run->dtype, bi.dtype);
    run->n_threads = p->n_threads;
    run->n_ranks = p->comm ? p->n_ranks : 1;
    prof_copy(run->transport, sizeof run->transport,
              !p->comm ? "" : kvr_comm_transport_name(p->transport));
    prof_copy(run->device_name, sizeof run->device_name, dev->name);
    prof_copy(run->blas, sizeof run->blas, dev->blas);
    prof_copy(run->cuda_version, sizeof run->cuda_version, dev->cuda_version);
    prof_copy(run->nccl_version, sizeof run->nccl_version, dev->nccl_version);
    run->mpi_version[0] = 0;
#ifdef KVR_USE_MPI
    if (p->comm && p->transport == KVR_TRANSPORT_MPI) {
        char v[MPI_MAX_LIBRARY_VERSION_STRING];
        int len = 0;
        if (MPI_Get_library_version(v, &len) == MPI_SUCCESS) {
            v[strcspn(v, "\n")] = 0;
            prof_copy(run->mpi_version, sizeof run->mpi_version, v);
        }
    }
#endif
    run->n_warmup = p->timing.n_warmup;
    run->n_iters_min = p->timing.min_iters;
    run->n_iters_max = p->timing.max_iters;
    run->time_budget_s = p->timing.budget_s;
    run->rel_tol = p->timing.rel_tol;
    prof_copy(run->grid, sizeof run->grid, p->grid.name);
    kvr_prof_ops_format(p->ops, run->ops, sizeof run->ops);
    prof_copy(run->source, sizeof run->source, "kvr-profile");
}
