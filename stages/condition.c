/* condition: a recursive-descent parser into a fixed array of nodes, and an
 * evaluator over it. */
#include "stages/condition.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NUMBER_LEN 64
#define MAX_INDEX      1000000

enum tok {
	T_END,
	T_NUMBER,
	T_RESULT,
	T_LBRACK,
	T_RBRACK,
	T_LPAREN,
	T_RPAREN,
	T_CMP,
	T_AND,
	T_OR,
	T_NOT,
};

enum cmp { CMP_LT, CMP_LE, CMP_GT, CMP_GE, CMP_EQ, CMP_NE };

enum operand_kind { OPERAND_NUMBER, OPERAND_ALL, OPERAND_AT };

struct operand {
	enum operand_kind kind;
	double number;
	long index;
};

enum node_kind { NODE_CMP, NODE_AND, NODE_OR, NODE_NOT };

struct node {
	enum node_kind kind;
	int a, b; /* children: AND, OR (a, b), NOT (a) */
	enum cmp op;
	struct operand left, right;
};

struct condition {
	size_t n;
	int root;
	struct node nodes[CONDITION_MAX_NODES];
	char text[];
};

struct parser {
	const char *s;
	size_t pos;  /* of the current token */
	size_t next; /* just past it */
	enum tok tok;
	enum cmp cmp;  /* T_CMP */
	double number; /* T_NUMBER */
	int depth;
	struct condition *c;
	char *err;
	size_t errlen;
	int failed;
};

static int fail(struct parser *p, size_t pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct parser *p, size_t pos, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	if (p->failed)
		return -1;
	p->failed = 1;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(p->err, p->errlen, "column %zu: %s", pos + 1, msg);
	return -1;
}

static int is_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

static int is_word(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || is_digit(ch) || ch == '_';
}

/* The decimal number at s + i, its sign included: [-+]?d*(.d*)?([eE][-+]?d+)?
 * with at least one digit before the exponent. */
static int lex_number(struct parser *p, size_t i)
{
	const char *s = p->s;
	size_t start = i, digits = 0;
	char buf[MAX_NUMBER_LEN + 1];
	char *end;

	if (s[i] == '-' || s[i] == '+')
		i++;
	for (; is_digit(s[i]); i++)
		digits++;
	if (s[i] == '.')
		for (i++; is_digit(s[i]); i++)
			digits++;
	if (digits == 0)
		return fail(p, start, "expected a number");
	if (s[i] == 'e' || s[i] == 'E') {
		size_t e = i++;
		if (s[i] == '-' || s[i] == '+')
			i++;
		if (!is_digit(s[i]))
			return fail(p, e, "expected digits after the exponent");
		while (is_digit(s[i]))
			i++;
	}
	if (is_word(s[i]) || s[i] == '.')
		return fail(p, i, "unexpected '%c' in a number", s[i]);
	if (i - start > MAX_NUMBER_LEN)
		return fail(p, start, "number longer than %d characters", MAX_NUMBER_LEN);
	memcpy(buf, s + start, i - start);
	buf[i - start] = '\0';
	errno = 0;
	p->number = strtod(buf, &end);
	if (errno == ERANGE && isinf(p->number))
		return fail(p, start, "number out of range");
	p->tok = T_NUMBER;
	p->next = i;
	return 0;
}

static int lex_word(struct parser *p, size_t i)
{
	static const struct {
		const char *word;
		enum tok tok;
	} words[] = {{"result", T_RESULT}, {"and", T_AND}, {"or", T_OR}, {"not", T_NOT}};
	size_t start = i;

	while (is_word(p->s[i]))
		i++;
	for (size_t w = 0; w < sizeof(words) / sizeof(words[0]); w++) {
		if (strlen(words[w].word) == i - start &&
		    memcmp(p->s + start, words[w].word, i - start) == 0) {
			p->tok = words[w].tok;
			p->next = i;
			return 0;
		}
	}
	return fail(p, start, "unknown name \"%.*s\" (only result, and, or, not)",
		    (int)(i - start > 32 ? 32 : i - start), p->s + start);
}

/* Reads the token at p->next into p->tok. */
static int lex(struct parser *p)
{
	const char *s = p->s;
	size_t i = p->next;

	while (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')
		i++;
	p->pos = i;
	p->next = i + 1;
	switch (s[i]) {
	case '\0':
		p->tok = T_END;
		p->next = i;
		return 0;
	case '[':
		p->tok = T_LBRACK;
		return 0;
	case ']':
		p->tok = T_RBRACK;
		return 0;
	case '(':
		p->tok = T_LPAREN;
		return 0;
	case ')':
		p->tok = T_RPAREN;
		return 0;
	case '<':
	case '>':
		p->tok = T_CMP;
		if (s[i + 1] == '=') {
			p->cmp = s[i] == '<' ? CMP_LE : CMP_GE;
			p->next = i + 2;
		} else {
			p->cmp = s[i] == '<' ? CMP_LT : CMP_GT;
		}
		return 0;
	case '=':
		if (s[i + 1] != '=')
			return fail(p, i, "use == to compare");
		p->tok = T_CMP;
		p->cmp = CMP_EQ;
		p->next = i + 2;
		return 0;
	case '!':
		if (s[i + 1] == '=') {
			p->tok = T_CMP;
			p->cmp = CMP_NE;
			p->next = i + 2;
		} else {
			p->tok = T_NOT;
		}
		return 0;
	case '&':
	case '|':
		if (s[i + 1] != s[i])
			return fail(p, i, "use %c%c or %s", s[i], s[i], s[i] == '&' ? "and" : "or");
		p->tok = s[i] == '&' ? T_AND : T_OR;
		p->next = i + 2;
		return 0;
	default:
		break;
	}
	if (is_digit(s[i]) || s[i] == '.' || s[i] == '-' || s[i] == '+')
		return lex_number(p, i);
	if (is_word(s[i]))
		return lex_word(p, i);
	if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
		return fail(p, i, "unexpected byte 0x%02x", (unsigned char)s[i]);
	return fail(p, i, "unexpected '%c'", s[i]);
}

static int new_node(struct parser *p, enum node_kind kind)
{
	if (p->c->n >= CONDITION_MAX_NODES)
		return fail(p, p->pos, "more than %d terms", CONDITION_MAX_NODES);
	struct node *nd = &p->c->nodes[p->c->n];
	memset(nd, 0, sizeof(*nd));
	nd->kind = kind;
	return (int)p->c->n++;
}

static int parse_operand(struct parser *p, struct operand *o)
{
	if (p->tok == T_NUMBER) {
		o->kind = OPERAND_NUMBER;
		o->number = p->number;
		return lex(p);
	}
	if (p->tok != T_RESULT)
		return fail(p, p->pos, "expected a number or result");
	if (lex(p) < 0)
		return -1;
	if (p->tok != T_LBRACK) {
		o->kind = OPERAND_ALL;
		return 0;
	}
	if (lex(p) < 0)
		return -1;
	size_t at = p->pos;
	const char *s = p->s + at;
	if (p->tok != T_NUMBER || !is_digit(*s))
		return fail(p, at, "expected an index from 0");
	for (; is_digit(*s); s++)
		if (s - (p->s + at) > 7)
			return fail(p, at, "index above %d", MAX_INDEX);
	if (s != p->s + p->next || p->number > MAX_INDEX)
		return fail(p, at, "expected an index from 0 to %d", MAX_INDEX);
	o->kind = OPERAND_AT;
	o->index = (long)p->number;
	if (lex(p) < 0)
		return -1;
	if (p->tok != T_RBRACK)
		return fail(p, p->pos, "expected ]");
	return lex(p);
}

static int parse_or(struct parser *p);

static int parse_comparison(struct parser *p)
{
	struct operand left, right;
	size_t start = p->pos;

	if (parse_operand(p, &left) < 0)
		return -1;
	if (p->tok != T_CMP)
		return fail(p, p->pos, "expected a comparison (< <= > >= == !=)");
	enum cmp op = p->cmp;
	if (lex(p) < 0 || parse_operand(p, &right) < 0)
		return -1;
	if (left.kind == OPERAND_ALL && right.kind == OPERAND_ALL)
		return fail(p, start, "compare result with a number or result[i], not with result");
	int n = new_node(p, NODE_CMP);
	if (n < 0)
		return -1;
	p->c->nodes[n].op = op;
	p->c->nodes[n].left = left;
	p->c->nodes[n].right = right;
	return n;
}

static int parse_unary(struct parser *p)
{
	int n, a;

	if (p->tok != T_NOT && p->tok != T_LPAREN)
		return parse_comparison(p);
	if (++p->depth > CONDITION_MAX_DEPTH)
		return fail(p, p->pos, "nested deeper than %d", CONDITION_MAX_DEPTH);
	if (p->tok == T_NOT) {
		if (lex(p) < 0 || (a = parse_unary(p)) < 0 || (n = new_node(p, NODE_NOT)) < 0)
			return -1;
		p->c->nodes[n].a = a;
	} else {
		size_t open = p->pos;
		if (lex(p) < 0 || (n = parse_or(p)) < 0)
			return -1;
		if (p->tok != T_RPAREN)
			return fail(p, p->pos, "expected ) to close the ( at column %zu", open + 1);
		if (lex(p) < 0)
			return -1;
	}
	p->depth--;
	return n;
}

static int parse_binary(struct parser *p, enum tok op, enum node_kind kind,
			int (*operand)(struct parser *))
{
	int left = operand(p);

	while (left >= 0 && p->tok == op) {
		int right, n;
		if (lex(p) < 0 || (right = operand(p)) < 0 || (n = new_node(p, kind)) < 0)
			return -1;
		p->c->nodes[n].a = left;
		p->c->nodes[n].b = right;
		left = n;
	}
	return left;
}

static int parse_and(struct parser *p)
{
	return parse_binary(p, T_AND, NODE_AND, parse_unary);
}

static int parse_or(struct parser *p)
{
	return parse_binary(p, T_OR, NODE_OR, parse_and);
}

struct condition *condition_parse(const char *text, char *err, size_t errlen)
{
	size_t len = strlen(text);
	struct parser p = {.s = text, .err = err, .errlen = errlen};

	if (len > CONDITION_MAX_LEN) {
		snprintf(err, errlen, "longer than %d characters", CONDITION_MAX_LEN);
		return NULL;
	}
	p.c = malloc(sizeof(*p.c) + len + 1);
	if (!p.c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	p.c->n = 0;
	memcpy(p.c->text, text, len + 1);
	if (lex(&p) < 0)
		goto fail;
	if (p.tok == T_END) {
		fail(&p, p.pos, "empty condition");
		goto fail;
	}
	p.c->root = parse_or(&p);
	if (p.c->root < 0)
		goto fail;
	if (p.tok != T_END) {
		fail(&p, p.pos, "expected and, or or the end");
		goto fail;
	}
	return p.c;
fail:
	free(p.c);
	return NULL;
}

static int compare(enum cmp op, double l, double r)
{
	switch (op) {
	case CMP_LT:
		return l < r;
	case CMP_LE:
		return l <= r;
	case CMP_GT:
		return l > r;
	case CMP_GE:
		return l >= r;
	case CMP_EQ:
		return l == r;
	case CMP_NE:
		return l != r;
	}
	return 0;
}

static int operand_value(const struct operand *o, const double *values, size_t n, double *out,
			 char *err, size_t errlen)
{
	if (o->kind == OPERAND_NUMBER) {
		*out = o->number;
		return 0;
	}
	if ((size_t)o->index >= n) {
		snprintf(err, errlen, "result[%ld]: only %zu value%s", o->index, n,
			 n == 1 ? "" : "s");
		return -1;
	}
	*out = values[o->index];
	return 0;
}

static int eval_cmp(const struct node *nd, const double *values, size_t n, char *err, size_t errlen)
{
	double l, r;

	if (nd->left.kind == OPERAND_ALL || nd->right.kind == OPERAND_ALL) {
		int all_left = nd->left.kind == OPERAND_ALL;
		const struct operand *other = all_left ? &nd->right : &nd->left;
		double o;
		if (n == 0) {
			snprintf(err, errlen, "result has no values");
			return -1;
		}
		if (operand_value(other, values, n, &o, err, errlen) < 0)
			return -1;
		for (size_t i = 0; i < n; i++)
			if (!(all_left ? compare(nd->op, values[i], o)
				       : compare(nd->op, o, values[i])))
				return 0;
		return 1;
	}
	if (operand_value(&nd->left, values, n, &l, err, errlen) < 0 ||
	    operand_value(&nd->right, values, n, &r, err, errlen) < 0)
		return -1;
	return compare(nd->op, l, r);
}

/* Each node's children come before it in nodes, so the recursion is at
 * most CONDITION_MAX_NODES deep. */
static int eval(const struct condition *c, int i, const double *values, size_t n, char *err,
		size_t errlen)
{
	const struct node *nd = &c->nodes[i];
	int a;

	switch (nd->kind) {
	case NODE_CMP:
		return eval_cmp(nd, values, n, err, errlen);
	case NODE_NOT:
		a = eval(c, nd->a, values, n, err, errlen);
		return a < 0 ? -1 : !a;
	case NODE_AND:
		a = eval(c, nd->a, values, n, err, errlen);
		return a <= 0 ? a : eval(c, nd->b, values, n, err, errlen);
	case NODE_OR:
		a = eval(c, nd->a, values, n, err, errlen);
		return a != 0 ? a : eval(c, nd->b, values, n, err, errlen);
	}
	return -1;
}

int condition_eval(const struct condition *c, const double *values, size_t n, char *err,
		   size_t errlen)
{
	return eval(c, c->root, values, n, err, errlen);
}

const char *condition_text(const struct condition *c)
{
	return c->text;
}

void condition_free(struct condition *c)
{
	free(c);
}
