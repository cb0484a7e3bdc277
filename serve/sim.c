/* sim.c -- the serving simulator (kvr_serving_simulate): a trace through the shared scheduler
 * on a virtual clock, each iteration priced by the fitted costs; and the summary of per-request
 * records that the engine's real replays share. */
#include "kvr_serving.h"

#include <gsl/gsl_sort.h>
#include <gsl/gsl_statistics_double.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// layerkv: the host copies (docs/serving.md "LayerKV", the overlap formulas)

double kvr_serving_host_gbps(const kvr_search_costs *m, double override_gbps) {
    if (override_gbps > 0) return override_gbps;
    double bytes_per_us = 0;
    if (m && kvr_search_costs_host_copy(m, &bytes_per_us, NULL) && bytes_per_us > 0)
        return bytes_per_us * 1e-3; /* bytes/us -> GB/s */
    return 0;
}

/* A prefill iteration with offload: embed_us, then L layers of c_us each, then head_us; after
 * layer l computes, the items that offload l copy their n_tokens of its K/V (us_per_token each)
 * on one copy engine, in layer order, each copy starting when its layer is done and the engine
 * is free. The iteration ends when both the compute and the last copy are done. *exposed: the
 * time beyond the compute. */
static double offload_pipeline_us(int32_t L, double embed_us, double c_us, double head_us,
                                  const kvr_sched_item *items, int32_t n_items,
                                  double us_per_token, double *exposed) {
    double t = embed_us, copy_end = 0;
    for (int32_t l = 0; l < L; l++) {
        t += c_us;
        double copy = 0;
        for (int32_t i = 0; i < n_items; i++)
            if (items[i].prefill && !kvr_layerkv_resident(L, items[i].resident, l))
                copy += (double)items[i].n_tokens * us_per_token;
        if (copy > 0) copy_end = KVR_MAX(copy_end, t) + copy;
    }
    const double compute = t + head_us, total = KVR_MAX(compute, copy_end);
    if (exposed) *exposed = total - compute;
    return total;
}

/* A stream decode step: L layers of d_us each; an item with offloaded layers has each of them
 * (its n_past cached tokens of K/V, us_per_token each) copied in on the copy engine, the copy of
 * layer l starting once the engine is free and layer l-1 has started (the previous layer's
 * compute hides it); layer l starts when layer l-1 is done and its copies have arrived. */
static double stream_pipeline_us(int32_t L, double d_us, const kvr_sched_item *items,
                                 int32_t n_items, double us_per_token, double *exposed) {
    double t = 0, prev_start = 0, copy_free = 0;
    for (int32_t l = 0; l < L; l++) {
        double copy = 0;
        for (int32_t i = 0; i < n_items; i++)
            if (!items[i].prefill && items[i].resident < L &&
                !kvr_layerkv_resident(L, items[i].resident, l))
                copy += (double)items[i].n_past * us_per_token;
        double start = t;
        if (copy > 0) {
            copy_free = KVR_MAX(copy_free, prev_start) + copy;
            start = KVR_MAX(start, copy_free);
        }
        prev_start = start;
        t = start + d_us;
    }
    if (exposed) *exposed = t - d_us * L;
    return t;
}

/* us per token of one layer's K/V over the host link; 0 without a bandwidth */
static double copy_us_per_token(const kvr_search_costs *m, double gbps) {
    return gbps > 0 ? kvr_search_costs_kv_bytes_per_token(m) / (gbps * 1e3) : 0;
}

double kvr_serving_predict_prefill(void *model, int64_t n_tokens, int64_t n_past,
                                   int32_t resident) {
    const kvr_serving_prefill_model *pm = model;
    const kvr_search_costs *m = pm->costs;
    const int32_t L = kvr_search_costs_n_layers(m);
    const kvr_sched_item it = {0, n_past, n_tokens, true, true, resident, false};
    const double c = kvr_search_costs_attn_us(m, n_tokens, n_past) +
                     kvr_search_costs_pre_us(m, n_tokens) + kvr_search_costs_post_us(m, n_tokens);
    return 1e-6 * offload_pipeline_us(L, n_past == 0 ? kvr_search_costs_embed_us(m) : 0, c,
                                      kvr_search_costs_head_us(m), &it, 1,
                                      copy_us_per_token(m, pm->host_gbps), NULL);
}

/* The iteration's time in microseconds (the pricing in kvr_serving.h; layerkv's copies: the
 * pipelines above). swap_layers[i]: item i's layers a swap-in brings back (reload swap). */
static double iteration_us(const kvr_sched_batch *b, const kvr_serving_sim_params *p,
                           const kvr_serving_decode_costs *dc, bool from_ops, double us_tok,
                           const int32_t *swap_layers, double *exposed) {
    const kvr_search_costs *m = p->costs;
    const int L = kvr_search_costs_n_layers(m);
    int64_t tp = 0, nd = 0, ctx = 0;
    bool head = false;
    double us = 0, dattn = 0;
    const double attn1 = kvr_search_costs_attn_us(m, 1, 0);
    for (int32_t i = 0; i < b->n_items; i++) {
        const kvr_sched_item *it = &b->items[i];
        if (it->prefill) {
            tp += it->n_tokens;
            us += L * kvr_search_costs_attn_us(m, it->n_tokens, it->n_past);
            if (it->n_past == 0) us += kvr_search_costs_embed_us(m);
            head |= it->samples;
        } else {
            nd++;
            ctx += it->n_past + 1;
            dattn += kvr_search_costs_attn_us(m, 1, it->n_past) - attn1;
        }
    }
    if (tp > 0 && nd > 0) {
        /* a mixed (chunked) iteration: the engine runs the decode rows in the same batched
         * GEMMs as the prefill rows (one kvr_batch_run), so they add rows to pre/post, their
         * attention over the caches (the decode step's per-token term, or the ops' increments)
         * and the head -- not a second iteration's fixed cost (the decode step's K) */
        us += L * (kvr_search_costs_pre_us(m, tp + nd) + kvr_search_costs_post_us(m, tp + nd));
        us += from_ops ? L * (attn1 + dattn) : dc->per_ctx_token_us * (double)ctx;
        head = true;
    } else if (tp > 0) {
        us += L * (kvr_search_costs_pre_us(m, tp) + kvr_search_costs_post_us(m, tp));
    } else if (nd > 0 && from_ops) {
        us += L * (kvr_search_costs_pre_us(m, nd) + kvr_search_costs_post_us(m, nd) + attn1 + dattn);
        head = true;
    } else if (nd > 0)
        us += dc->k_us + dc->per_seq_us * (double)nd + dc->per_ctx_token_us * (double)ctx;
    if (head) us += kvr_search_costs_head_us(m);
    *exposed = 0;
    if (p->sched.policy != KVR_POLICY_LAYERKV || !(us_tok > 0)) return us;
    if (tp > 0 && nd == 0) { /* layerkv prefills: the same compute, the offload pipelined */
        double emb = 0;
        for (int32_t i = 0; i < b->n_items; i++)
            if (b->items[i].n_past == 0) emb += kvr_search_costs_embed_us(m);
        const double hd = head ? kvr_search_costs_head_us(m) : 0;
        const double c = (us - emb - hd) / L;
        return offload_pipeline_us(L, emb, c, hd, b->items, b->n_items, us_tok, exposed);
    }
    if (nd > 0 && tp == 0) {
        double swap = 0; /* swap-ins: copied back before the step, not overlapped */
        for (int32_t i = 0; i < b->n_items; i++)
            if (b->items[i].swap_in) swap += (double)swap_layers[i] * (double)b->items[i].n_past * us_tok;
        double ex = 0, step = us;
        if (p->sched.layerkv.reload == KVR_RELOAD_STREAM)
            step = stream_pipeline_us(L, us / L, b->items, b->n_items, us_tok, &ex);
        *exposed = swap + ex;
        return swap + step;
    }
    return us;
}

// ----------------------------------------------------------------------------
// pool occupancy

void kvr_serving_occupancy_free(kvr_serving_occupancy *o) {
    if (!o) return;
    free(o->t_s);
    free(o->blocks);
    memset(o, 0, sizeof *o);
}

/* Add a step at t (a later value at the same time replaces the earlier); false: out of memory. */
static bool occ_push(kvr_serving_occupancy *o, double t, int64_t blocks) {
    if (!o) return true;
    if (o->n > 0 && o->t_s[o->n - 1] == t) {
        o->n--;
        if (o->n > 0 && o->blocks[o->n - 1] == blocks) return true;
    } else if (o->n > 0 && o->blocks[o->n - 1] == blocks)
        return true;
    if (o->n == o->cap) {
        const int64_t cap = o->cap ? 2 * o->cap : 256;
        double *t2 = realloc(o->t_s, (size_t)cap * sizeof *t2);
        if (!t2) return false;
        o->t_s = t2;
        int64_t *b2 = realloc(o->blocks, (size_t)cap * sizeof *b2);
        if (!b2) return false;
        o->blocks = b2;
        o->cap = cap;
    }
    o->t_s[o->n] = t;
    o->blocks[o->n++] = blocks;
    return true;
}

kvr_status kvr_serving_occupancy_bins(const kvr_serving_occupancy *o, double end_s,
                                      int64_t n_bins, double *t0_s, double *mean, int64_t *max,
                                      kvr_error *err) {
    if (!o || n_bins < 1 || !(end_s > 0) || !isfinite(end_s))
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "occupancy bins: %lld bins over %g s (need >= 1 over > 0 s)",
                             (long long)n_bins, end_s);
    const double w = end_s / (double)n_bins;
    for (int64_t k = 0; k < n_bins; k++) t0_s[k] = w * (double)k, mean[k] = 0, max[k] = 0;
    for (int64_t i = 0; i < o->n; i++) {
        const double a = KVR_MAX(o->t_s[i], 0.0);
        const double b = KVR_MIN(i + 1 < o->n ? o->t_s[i + 1] : end_s, end_s);
        if (!(b > a)) continue;
        int64_t k0 = (int64_t)(a / w), k1 = (int64_t)(b / w);
        if (k1 >= n_bins) k1 = n_bins - 1;
        if (k0 > k1) k0 = k1;
        for (int64_t k = k0; k <= k1; k++) {
            const double lo = KVR_MAX(a, w * (double)k);
            const double hi = KVR_MIN(b, k + 1 == n_bins ? end_s : w * (double)(k + 1));
            if (!(hi > lo)) continue;
            mean[k] += (double)o->blocks[i] * (hi - lo) / w;
            if (o->blocks[i] > max[k]) max[k] = o->blocks[i];
        }
    }
    return KVR_OK;
}

// ----------------------------------------------------------------------------
// the simulator

kvr_status kvr_serving_simulate(const kvr_trace *t, const kvr_serving_sim_params *p,
                                kvr_serving_record *out, kvr_serving_sim_stats *stats,
                                kvr_error *err) {
    if (!t || !p || !p->costs || !out)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "serving simulator: missing argument");
    kvr_serving_decode_costs dcv = p->decode;
    const kvr_serving_decode_costs *dc = &dcv;
    if (!(dc->k_us >= 0 && dc->per_seq_us >= 0 && dc->per_ctx_token_us >= 0))
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "serving simulator: decode costs must be >= 0 (k %g, per_seq %g, "
                             "per_ctx_token %g us)",
                             dc->k_us, dc->per_seq_us, dc->per_ctx_token_us);
    bool from_ops = dc->k_us == 0 && dc->per_seq_us == 0 && dc->per_ctx_token_us == 0;
    bool from_costs = false;
    kvr_search_decode_step ds;
    if (from_ops && !p->decode_from_ops && kvr_search_costs_decode_step(p->costs, &ds, NULL)) {
        dcv = (kvr_serving_decode_costs){ds.k_us, ds.per_seq_us, ds.per_ctx_token_us};
        from_ops = false;
        from_costs = true;
    }
    const int64_t n = t->n_requests;
    if (n > INT32_MAX)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "serving simulator: %lld requests (at most %d)",
                             (long long)n, INT32_MAX);
    kvr_sched_params sp = p->sched;
    const int32_t L = kvr_search_costs_n_layers(p->costs);
    if (!sp.n_layers) sp.n_layers = L;
    const bool lkv = sp.policy == KVR_POLICY_LAYERKV;
    if (sp.n_layers != L)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "serving simulator: sched.n_layers %d, the cost model has %d layers",
                             sp.n_layers, L);
    kvr_serving_prefill_model pm = {p->costs, kvr_serving_host_gbps(p->costs, p->host_gbps)};
    if (lkv && !(pm.host_gbps > 0))
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "serving simulator: policy layerkv needs the host copy bandwidth: "
                             "host_gbps (kvr-serve --host-gbps) or the cost model's");
    if (lkv && !(kvr_search_costs_kv_bytes_per_token(p->costs) > 0))
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "serving simulator: policy layerkv needs the cost model's K/V bytes "
                             "per token (%s)",
                             kvr_search_costs_source(p->costs));
    const double us_tok = lkv ? copy_us_per_token(p->costs, pm.host_gbps) : 0;
    kvr_sched *s = NULL;
    KVR_TRY(kvr_sched_create(&sp, &s, err));
    if (lkv) kvr_sched_set_predictor(s, kvr_serving_predict_prefill, &pm);
    /* scheduler id -> record; each request's resident layers at its last item; swap-in layers */
    int32_t *rec_of = malloc((size_t)(n ? n : 1) * 3 * sizeof *rec_of);
    if (!rec_of) {
        kvr_sched_destroy(s);
        return kvr_error_set(err, KVR_ERR_NOMEM, "serving simulator: out of memory");
    }
    int32_t *last_res = rec_of + (n ? n : 1), *swap_layers = last_res + (n ? n : 1);
    kvr_serving_occupancy *occ = p->occupancy;
    if (occ) occ->n = 0;
    kvr_serving_sim_stats st;
    memset(&st, 0, sizeof st);
    st.decode_from_ops = from_ops, st.decode_from_costs = from_costs, st.decode = dcv;
    st.host_gbps = lkv ? pm.host_gbps : 0;
    kvr_status rc = KVR_OK;
    double now = 0, block_s = 0;
    int64_t next = 0, done = 0;
    while (done < n) {
        for (; next < n && t->requests[next].arrival_s <= now; next++) {
            const kvr_trace_request *q = &t->requests[next];
            kvr_serving_record *r = &out[next];
            memset(r, 0, sizeof *r);
            r->arrival_s = q->arrival_s;
            r->admitted_s = r->first_token_s = r->finish_s = -1;
            r->prompt_tokens = q->prompt_tokens;
            int32_t id;
            kvr_error e;
            if (kvr_sched_add_at(s, q->prompt_tokens, q->output_tokens, q->arrival_s, &id, &e) !=
                KVR_OK) {
                if (e.code != KVR_ERR_INVALID_ARG) {
                    rc = kvr_error_set(err, e.code, "%s", e.msg);
                    goto out;
                }
                r->refused = true;
                done++;
                continue;
            }
            rec_of[id] = (int32_t)next;
        }
        kvr_sched_batch b;
        if ((rc = kvr_sched_next_at(s, now, &b, err)) != KVR_OK) goto out;
        if (b.n_items == 0) {
            if (!occ_push(occ, now, kvr_sched_blocks_used(s))) goto nomem;
            if (next < n) {
                now = KVR_MAX(now, t->requests[next].arrival_s);
                continue;
            }
            if (done < n) { /* requests queued, nothing can run: the scheduler's admission
                             * guarantees cannot hold -- never expected */
                rc = kvr_error_set(err, KVR_ERR_INTERNAL,
                                   "serving simulator: %d requests waiting and none can run",
                                   kvr_sched_n_waiting(s));
                goto out;
            }
            break;
        }
        for (int32_t i = 0; i < b.n_items; i++) {
            kvr_serving_record *r = &out[rec_of[b.items[i].req]];
            if (r->admitted_s < 0) r->admitted_s = now;
        }
        if (!occ_push(occ, now, b.blocks_used)) goto nomem;
        for (int32_t i = 0; i < b.n_items; i++) {
            const kvr_sched_item *it = &b.items[i];
            swap_layers[i] = it->swap_in ? L - last_res[it->req] : 0;
            last_res[it->req] = it->resident;
        }
        double exposed = 0;
        const double dt = iteration_us(&b, p, dc, from_ops, us_tok, swap_layers, &exposed) * 1e-6;
        st.copy_exposed_s += exposed * 1e-6;
        st.swap_ins += b.n_swap_in;
        if (b.host_layer_blocks_used > st.peak_host_blocks)
            st.peak_host_blocks = b.host_layer_blocks_used;
        st.iterations++;
        st.busy_s += dt;
        block_s += dt * (double)b.blocks_used;
        if (b.blocks_used > st.peak_blocks) st.peak_blocks = b.blocks_used;
        now += dt;
        if ((rc = kvr_sched_complete_at(s, &b, NULL, now, err)) != KVR_OK) goto out;
        for (int32_t i = 0; i < b.n_items; i++) {
            if (!b.items[i].samples) continue;
            const kvr_sched_req *q = kvr_sched_request(s, b.items[i].req);
            kvr_serving_record *r = &out[rec_of[b.items[i].req]];
            if (r->first_token_s < 0) r->first_token_s = now;
            r->output_tokens = q->generated;
            r->preemptions = q->preemptions;
            r->max_blocks = q->max_blocks;
            if (q->state == KVR_REQ_FINISHED) {
                r->finish_s = now;
                done++;
            }
        }
    }
    st.end_s = now;
    st.mean_blocks = st.busy_s > 0 ? block_s / st.busy_s : 0;
    st.correction = kvr_sched_correction(s);
    if (!occ_push(occ, now, kvr_sched_blocks_used(s))) goto nomem;
    if (stats) *stats = st;
    goto out;
nomem:
    rc = kvr_error_set(err, KVR_ERR_NOMEM, "serving simulator: out of memory for the occupancy");
out:
    free(rec_of);
    kvr_sched_destroy(s);
    return rc;
}

// ----------------------------------------------------------------------------
// summary

static void pcts(double *v, size_t n, double out[3], double *mean) {
    if (n == 0) {
        out[0] = out[1] = out[2] = *mean = 0;
        return;
    }
    gsl_sort(v, 1, n);
    out[0] = gsl_stats_quantile_from_sorted_data(v, 1, n, 0.50);
    out[1] = gsl_stats_quantile_from_sorted_data(v, 1, n, 0.90);
    out[2] = gsl_stats_quantile_from_sorted_data(v, 1, n, 0.99);
    *mean = gsl_stats_mean(v, 1, n);
}

kvr_status kvr_serving_summarize(const kvr_serving_record *r, int64_t n, double slo_ttft_s,
                                 double slo_tpot_s, kvr_serving_summary *out, kvr_error *err) {
    if (n < 0) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "summary of %lld requests", (long long)n);
    memset(out, 0, sizeof *out);
    out->n = n;
    out->slo_ttft_s = slo_ttft_s;
    out->slo_tpot_s = slo_tpot_s;
    double *v = malloc(3 * (size_t)(n ? n : 1) * sizeof *v);
    if (!v) return kvr_error_set(err, KVR_ERR_NOMEM, "summary: out of memory");
    double *ttft = v, *tpot = v + n, *queue = v + 2 * n;
    size_t nt = 0, np = 0;
    int64_t met = 0, tokens = 0;
    double first = 0, last = 0;
    for (int64_t i = 0; i < n; i++) {
        const kvr_serving_record *q = &r[i];
        if (i == 0 || q->arrival_s < first) first = q->arrival_s;
        if (q->refused) {
            out->n_refused++;
            continue;
        }
        out->n_preemptions += q->preemptions;
        if (q->finish_s < 0) continue;
        out->n_finished++;
        tokens += q->output_tokens;
        if (q->finish_s > last) last = q->finish_s;
        const double tt = q->first_token_s - q->arrival_s;
        ttft[nt] = tt, queue[nt] = q->admitted_s - q->arrival_s, nt++;
        double tp = 0;
        if (q->output_tokens > 1)
            tp = tpot[np++] = (q->finish_s - q->first_token_s) / (double)(q->output_tokens - 1);
        if ((slo_ttft_s <= 0 || tt <= slo_ttft_s) && (slo_tpot_s <= 0 || tp <= slo_tpot_s)) met++;
    }
    pcts(ttft, nt, out->ttft_s, &out->ttft_mean_s);
    pcts(queue, nt, out->queue_s, &out->queue_mean_s);
    pcts(tpot, np, out->tpot_s, &out->tpot_mean_s);
    free(v);
    out->slo_attainment = n ? (double)met / (double)n : 0;
    out->duration_s = last > first ? last - first : 0;
    if (out->duration_s > 0) {
        out->output_tok_per_s = (double)tokens / out->duration_s;
        out->req_per_s = (double)out->n_finished / out->duration_s;
    }
    return KVR_OK;
}
