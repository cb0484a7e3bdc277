/* run.c -- a profile run's lifecycle (kvr_profile_run): reap dead writers, create a run with its
 * provenance or claim an incomplete one for resuming (its own parameters, the same model), load
 * the model, share rank 0's choices with the other MPI ranks over the control channel, profile
 * the layer ops and the transfers, and move the run's status running -> complete, or incomplete
 * (interrupted, or an error that resuming can fix) or failed. The tool parses and prints. */
#include "kvr_profiler.h"

#include <stdio.h>
#include <string.h>

kvr_profile_run_params kvr_profile_run_params_default(void) {
    kvr_profile_run_params p;
    memset(&p, 0, sizeof p);
    p.transport = KVR_TRANSPORT_THREADS;
    p.seed = 1234;
    return p;
}

/* Fail at stage: record where, pass the status through. */
static kvr_status prun_fail(kvr_profile_run_info *info, kvr_profile_stage stage, kvr_status st) {
    info->stage = stage;
    return st;
}

/* Rank 0's text (NUL-terminated, < cap bytes) to every rank of comm. */
static kvr_status prun_bcast_text(kvr_comm *comm, bool root, char *buf, size_t cap,
                                  kvr_error *err) {
    int64_t len = root ? (int64_t)strlen(buf) : 0;
    KVR_TRY(kvr_comm_ctrl_bcast(comm, 0, &len, sizeof len, err));
    if (len < 0 || len >= (int64_t)cap)
        return kvr_error_set(err, KVR_ERR_COMM, "profile: %lld bytes of parameters from rank 0",
                             (long long)len);
    return kvr_comm_ctrl_bcast(comm, 0, buf, (size_t)len + 1, err);
}

/* Rank 0, resuming: the run exists, is a profile, is not complete; its parameters, and the
 * transport it profiles transfers over is this process's. */
static kvr_status prun_resume_check(const kvr_profile_run_params *p, kvr_profile_run_info *info,
                                    kvr_error *err) {
    KVR_TRY(kvr_db_run_get(p->db, p->resume, &info->run, err));
    if (strcmp(info->run.kind, "profile"))
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "an %s run, not a profile", info->run.kind);
    if (info->run.status == KVR_RUN_COMPLETE)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "the run is already complete");
    KVR_TRY(kvr_profile_params_parse(info->run.params, &info->params, err));
    if (p->model) snprintf(info->params.model, sizeof info->params.model, "%.511s", p->model);
    if (info->params.comm && info->params.transport != p->transport) {
        const bool mpi = info->params.transport == KVR_TRANSPORT_MPI;
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "the run profiles transfers over %s; resume it the same way%s",
                             kvr_comm_transport_name(info->params.transport),
                             mpi ? " (mpirun ... --transport mpi)" : "");
    }
    return KVR_OK;
}

/* Rank 0, resuming: the model loaded now is the one the run profiled; then claim the run. */
static kvr_status prun_resume_claim(const kvr_profile_run_params *p, kvr_profile_run_info *info,
                                    kvr_error *err) {
    kvr_db_model old;
    KVR_TRY(kvr_db_model_get(p->db, info->run.model_id, &old, err));
    const kvr_db_model *m = &info->model;
    if (strcmp(old.content_hash, m->content_hash) || old.n_layers != m->n_layers ||
        old.d_model != m->d_model)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "the run profiled model %s (%s, hash %s) but %s is different (hash "
                             "%s)",
                             old.name, old.source, old.content_hash, info->params.model,
                             m->content_hash);
    KVR_TRY(kvr_db_run_claim(p->db, info->run.id, err));
    return kvr_db_run_get(p->db, info->run.id, &info->run, err); /* now running, ours */
}

/* Rank 0, a new run: provenance, parameters, device and model records, the run row. */
static kvr_status prun_create(const kvr_profile_run_params *p, kvr_profile_run_info *info,
                              kvr_error *err) {
    kvr_db_device dev;
    kvr_profile_device(&dev, p->backend);
    info->run = kvr_db_run_init("profile");
    info->params.backend = p->backend;
    kvr_profile_run_provenance(&info->run, &dev, &info->params);
    info->run.timer_overhead_us = kvr_timer_overhead_us();
    KVR_TRY(kvr_profile_params_format(&info->params, info->run.params, sizeof info->run.params,
                                      err));
    KVR_TRY(kvr_db_device_put(p->db, &dev, &info->run.device_id, err));
    KVR_TRY(kvr_db_model_put(p->db, &info->model, &info->run.model_id, err));
    return kvr_db_run_insert(p->db, &info->run, err);
}

/* The model: its source (rank 0 decides: the option, the resumed run's, or the default model;
 * every MPI rank gets rank 0's choice), loaded on every rank; rank 0 makes its record and, for
 * a new run, the parameters. */
static kvr_status prun_model(const kvr_profile_run_params *p, bool root, kvr_model **model,
                             kvr_profile_run_info *info, kvr_error *err) {
    char src[1024] = "";
    const char *msrc = p->resume ? info->params.model : p->model;
    if (root && !msrc) {
        const kvr_status st = kvr_model_default_path(src, sizeof src, err);
        if (st != KVR_OK) return prun_fail(info, KVR_PROFILE_STAGE_MODEL_DEFAULT, st);
        msrc = src;
    }
    if (p->comm) {
        if (root) snprintf(src, sizeof src, "%s", msrc);
        kvr_status st = prun_bcast_text(p->comm, root, src, sizeof src, err);
        if (st != KVR_OK) return prun_fail(info, KVR_PROFILE_STAGE_COMM, st);
        msrc = src;
    }
    snprintf(info->model_source, sizeof info->model_source, "%s", msrc);
    kvr_model_load_params lp = kvr_model_load_params_default();
    lp.seed = p->resume ? info->params.seed : p->seed;
    lp.n_layers_override = p->resume ? info->params.model_layers : p->layers;
    lp.load_tokenizer = false;
    kvr_status st = kvr_model_load(msrc, &lp, model, err);
    if (st != KVR_OK) return prun_fail(info, KVR_PROFILE_STAGE_MODEL, st);
    if (!root) return KVR_OK;
    if (!p->resume) {
        info->params = kvr_profile_params_default();
        st = p->make_params ? p->make_params(p->user, kvr_model_get_config(*model), msrc,
                                             &info->params, err)
                            : KVR_OK;
        if (st != KVR_OK) return prun_fail(info, KVR_PROFILE_STAGE_PARAMS, st);
    }
    st = kvr_profile_model_record(*model, msrc, lp.seed, lp.n_layers_override, &info->model, err);
    if (st != KVR_OK) return prun_fail(info, KVR_PROFILE_STAGE_MODEL, st);
    return KVR_OK;
}

/* The profiles themselves; on return the run's final status is recorded (rank 0). */
static kvr_status prun_measure(const kvr_profile_run_params *p, bool root, const kvr_model *model,
                               kvr_profile_run_info *info, bool *claimed, kvr_error *err) {
    const kvr_profile_params *pp = &info->params;
    kvr_profile_hooks hooks = {p->stop, p->on_point, p->user};
    kvr_status st = KVR_OK;
    if (pp->ops && !p->comm) {
        if (p->on_phase && root) p->on_phase(p->user, "ops", true);
        st = kvr_profile_layers(p->db, info->run.id, model, pp, &hooks, &info->layers, err);
        if (p->on_phase && root) p->on_phase(p->user, "ops", false);
    }
    if (st == KVR_OK && !info->layers.stopped && pp->comm) {
        if (p->on_phase && root) p->on_phase(p->user, "transfers", true);
        if (p->comm)
            st = kvr_profile_transfers_rank(p->db, info->run.id, p->comm, model, pp, &hooks,
                                            &info->transfers, err);
        else
            st = kvr_profile_transfers_threads(p->db, info->run.id, model, pp, &hooks,
                                               &info->transfers, err);
        if (p->on_phase && root) p->on_phase(p->user, "transfers", false);
    }
    /* the overheads step: one process, all layer ops (its op model needs them), a host backend */
    if (st == KVR_OK && !info->layers.stopped && !info->transfers.stopped && pp->overheads &&
        !p->comm && root && (pp->ops & KVR_PROF_OPS_ALL) == KVR_PROF_OPS_ALL &&
        kvr_backend_mem_space(pp->backend ? pp->backend : kvr_backend_at(0)) == KVR_MEM_HOST) {
        if (p->on_phase) p->on_phase(p->user, "overheads", true);
        st = kvr_profile_overheads(p->db, info->run.id, model, &info->model, pp, &hooks,
                                   &info->overheads, err);
        if (p->on_phase) p->on_phase(p->user, "overheads", false);
    }
    /* batched decode steps (serving): one process; the backend's paged pool (cpu) */
    if (st == KVR_OK && !info->layers.stopped && !info->transfers.stopped &&
        !info->overheads.stopped && pp->decode && !p->comm && root &&
        (pp->ops & KVR_PROF_OPS_ALL) == KVR_PROF_OPS_ALL) {
        if (p->on_phase) p->on_phase(p->user, "decode", true);
        st = kvr_profile_decode(p->db, info->run.id, model, pp, &hooks, &info->decode, err);
        if (p->on_phase) p->on_phase(p->user, "decode", false);
    }
    info->stopped = info->layers.stopped || info->overheads.stopped || info->transfers.stopped ||
                    info->decode.stopped;
    if (st != KVR_OK) {
        info->stage = KVR_PROFILE_STAGE_PROFILE;
        /* a full disk, a busy or failing store, a lost rank: what was stored stays, resumable */
        info->resumable = st == KVR_ERR_IO || st == KVR_ERR_DB || st == KVR_ERR_COMM;
        if (root) {
            kvr_error e2;
            if (kvr_db_run_set_status(p->db, info->run.id,
                                      info->resumable ? KVR_RUN_INCOMPLETE : KVR_RUN_FAILED,
                                      err ? err->msg : "profile failed", &e2) == KVR_OK)
                *claimed = false;
        }
        return st;
    }
    if (!root) return KVR_OK;
    char note[128] = "";
    if (info->stopped)
        snprintf(note, sizeof note, "interrupted after %lld points",
                 (long long)(info->layers.n_measured + info->layers.n_skipped +
                             info->overheads.n_measured + info->overheads.n_skipped +
                             info->decode.n_measured + info->decode.n_skipped +
                             info->transfers.n_measured + info->transfers.n_skipped));
    st = kvr_db_run_set_status(p->db, info->run.id,
                               info->stopped ? KVR_RUN_INCOMPLETE : KVR_RUN_COMPLETE, note, err);
    if (st == KVR_OK) *claimed = false;
    if (st == KVR_OK) st = kvr_db_run_get(p->db, info->run.id, &info->run, err);
    if (st != KVR_OK) info->stage = KVR_PROFILE_STAGE_FINISH;
    return st;
}

kvr_status kvr_profile_run(const kvr_profile_run_params *p, kvr_profile_run_info *info,
                           kvr_error *err) {
    memset(info, 0, sizeof *info);
    const bool root = !p->comm || kvr_comm_rank(p->comm) == 0;
    if (root && !p->db)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "profile: rank 0 needs the store");
    const double t_start = kvr_time_us();
    info->resumed = p->resume > 0;
    kvr_model *model = NULL;
    bool claimed = false; /* the run is ours and still marked running */
    kvr_status st = KVR_OK;
    if (root) {
        st = kvr_db_runs_reap(p->db, NULL, err);
        if (st != KVR_OK) return prun_fail(info, KVR_PROFILE_STAGE_STORE, st);
        if (p->resume && (st = prun_resume_check(p, info, err)) != KVR_OK)
            return prun_fail(info, KVR_PROFILE_STAGE_RESUME, st);
    }
    if ((st = prun_model(p, root, &model, info, err)) != KVR_OK) goto done;
    if (root) {
        if (p->resume) {
            st = prun_resume_claim(p, info, err);
            if (st != KVR_OK) {
                info->stage = KVR_PROFILE_STAGE_RESUME;
                goto done;
            }
        } else if ((st = prun_create(p, info, err)) != KVR_OK) {
            info->stage = KVR_PROFILE_STAGE_STORE;
            goto done;
        }
        claimed = true;
        if (p->on_start) p->on_start(p->user, info);
    }
    if (p->comm) { /* every rank runs rank 0's parameters */
        char params[sizeof info->run.params];
        snprintf(params, sizeof params, "%s", root ? info->run.params : "");
        st = prun_bcast_text(p->comm, root, params, sizeof params, err);
        if (st == KVR_OK && !root) st = kvr_profile_params_parse(params, &info->params, err);
        if (st != KVR_OK) {
            info->stage = KVR_PROFILE_STAGE_COMM;
            goto done;
        }
    }
    info->params.backend = p->backend; /* not in the stored parameters: this process's */
    st = prun_measure(p, root, model, info, &claimed, err);
done:
    if (st != KVR_OK && root && claimed) {
        /* a failure after the run was created or claimed: leave it resumable */
        kvr_db_run_set_status(p->db, info->run.id, KVR_RUN_INCOMPLETE,
                              err && err->msg[0] ? err->msg : "stopped", NULL);
    }
    info->elapsed_s = (kvr_time_us() - t_start) * 1e-6;
    kvr_model_destroy(model);
    return st;
}
