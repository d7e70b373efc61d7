/* condition: the successCondition and failureCondition of an analysis, such
 * as "result < 0.01" or "result[0] >= 0.95 and not (result[1] > 2)".
 *
 * A condition is parsed once (errors name their 1-based column) and then
 * evaluated against each measurement's values. Input of any length or shape
 * is rejected cleanly: the text, the number of terms and the nesting are
 * bounded, and evaluation never recurses deeper than parsing allowed.
 */
#ifndef SLUICE_CONDITION_H
#define SLUICE_CONDITION_H

#include <stddef.h>

#define CONDITION_MAX_LEN   1024
#define CONDITION_MAX_NODES 256
#define CONDITION_MAX_DEPTH 32

/* Grammar (keywords are case-sensitive; "&&", "||", "!" are synonyms):
 *   expr    = and { "or" and }
 *   and     = unary { "and" unary }
 *   unary   = "not" unary | "(" expr ")" | operand cmp operand
 *   cmp     = "<" | "<=" | ">" | ">=" | "==" | "!="
 *   operand = number | "result" | "result[" index "]"
 * A number is decimal with an optional sign, fraction and exponent.
 * result[i] is the i-th value (from 0); a bare `result` holds when the
 * comparison holds for every value, so "result < 0.01" reads naturally for
 * one value and means "all of them" for several. At most one side of a
 * comparison may be a bare `result`. */
struct condition;

/* NULL with err "column 9: expected a number or result" when text is not
 * a condition (or memory runs out). */
struct condition *condition_parse(const char *text, char *err, size_t errlen);

/* 1 when the condition holds for values[0..n-1], 0 when not, -1 with err
 * when it cannot say ("result[2]: only 2 values"). Comparisons with NaN are
 * false, as in IEEE 754. */
int condition_eval(const struct condition *c, const double *values, size_t n, char *err,
		   size_t errlen);

/* The text it was parsed from. */
const char *condition_text(const struct condition *c);

void condition_free(struct condition *c);

#endif
