/* verify/moe.c - mixture-of-experts FFN layers (see llm_impl.h). Placeholder until the
 * expert routing lands: a file with experts is refused. */
#include "verify/llm_impl.h"

#include <stdio.h>

pare_status llm_moe_hparams(pare_llm *llm, pare_err *err) {
    (void)err;
    llm->n_expert = llm->n_expert_used = 0;
    return PARE_OK;
}

pare_status llm_moe_load(pare_llm *llm, int il, llm_layer *L, pare_err *err) {
    (void)il;
    (void)L;
    return pare_err_set(err, PARE_EUNSUPPORTED, "%s: mixture-of-experts layers are not supported", llm->name);
}

void llm_moe_free(struct llm_moe *moe) { (void)moe; }

pare_status llm_moe_ffn(pare_llm *llm, int il, int T, const float *xn, float *out, pare_err *err) {
    (void)il;
    (void)T;
    (void)xn;
    (void)out;
    return pare_err_set(err, PARE_EUNSUPPORTED, "%s: mixture-of-experts layers are not supported", llm->name);
}

void pare_llm_set_expert_hook(pare_llm *llm, pare_llm_expert_fn fn, void *user) {
    llm->expert_hook = fn;
    llm->expert_hook_user = user;
}
