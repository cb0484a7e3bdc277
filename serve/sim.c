/* sim.c -- the serving simulator (kvr_serving_simulate): a trace through the shared scheduler
 * on a virtual clock, each iteration priced by the fitted costs; and the summary of per-request
 * records that the engine's real replays share. */
#include "kvr_serving.h"

#include <gsl/gsl_sort.h>
#include <gsl/gsl_statistics_double.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The iteration's time in microseconds (the pricing in kvr_serving.h). */
static double iteration_us(const kvr_sched_batch *b, const kvr_serving_sim_params *p,
                           const kvr_serving_decode_costs *dc, bool from_ops) {
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
    kvr_sched *s = NULL;
    KVR_TRY(kvr_sched_create(&p->sched, &s, err));
    int32_t *rec_of = malloc((size_t)(n ? n : 1) * sizeof *rec_of); /* scheduler id -> record */
    if (!rec_of) {
        kvr_sched_destroy(s);
        return kvr_error_set(err, KVR_ERR_NOMEM, "serving simulator: out of memory");
    }
    kvr_serving_occupancy *occ = p->occupancy;
    if (occ) occ->n = 0;
    kvr_serving_sim_stats st = {0, 0, 0, 0, 0, from_ops, from_costs, dcv};
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
            if (kvr_sched_add(s, q->prompt_tokens, q->output_tokens, &id, &e) != KVR_OK) {
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
        if ((rc = kvr_sched_next(s, &b, err)) != KVR_OK) goto out;
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
        const double dt = iteration_us(&b, p, dc, from_ops) * 1e-6;
        st.iterations++;
        st.busy_s += dt;
        block_s += dt * (double)b.blocks_used;
        if (b.blocks_used > st.peak_blocks) st.peak_blocks = b.blocks_used;
        now += dt;
        if ((rc = kvr_sched_complete(s, &b, NULL, err)) != KVR_OK) goto out;
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
