/* errors: the call failure table (see errors.h). */
#include "proxy/errors.h"

static const struct {
    uint64_t code;
    const char *name;
    const char *text;
} causes[] = {
#define X(name, code, metric, text) {code, metric, text},
    CALL_CAUSES(X)
#undef X
};

uint64_t call_cause_code(enum call_cause c)
{
    return causes[c].code;
}

const char *call_cause_name(enum call_cause c)
{
    return causes[c].name;
}

const char *call_cause_text(enum call_cause c)
{
    return causes[c].text;
}
