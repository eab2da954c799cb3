/* errname.c - kvlm_err_name(): the stable name of each error code.
 * Room: engine (public API). May touch: kvlm.h only. */
#include "kvlm.h"

const char *kvlm_err_name(kvlm_err e)
{
    switch (e) {
    case KVLM_OK:               return "KVLM_OK";
    case KVLM_ERR_IO:           return "KVLM_ERR_IO";
    case KVLM_ERR_FORMAT:       return "KVLM_ERR_FORMAT";
    case KVLM_ERR_UNSUPPORTED:  return "KVLM_ERR_UNSUPPORTED";
    case KVLM_ERR_NOMEM:        return "KVLM_ERR_NOMEM";
    case KVLM_ERR_INVALID:      return "KVLM_ERR_INVALID";
    case KVLM_ERR_CONTEXT_FULL: return "KVLM_ERR_CONTEXT_FULL";
    case KVLM_ERR_BUDGET:       return "KVLM_ERR_BUDGET";
    }
    return "KVLM_ERR_UNKNOWN";   /* a value outside the enum (never NULL) */
}
