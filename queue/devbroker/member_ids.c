/* member_ids: consumer-group member ids that sluice-devbroker never hands
 * out twice.
 *
 * librdkafka 2.0.2's mock cluster gives a member that joins without an id
 * the id snprintf(id, 32, "%p", member): the address of its freshly
 * calloc'ed member record. A member evicted by the mock's session sweep has
 * its record freed but rejoins under its old id, and glibc hands freed
 * blocks out again: the next member to join without an id can get the
 * evicted record, and with its address the id still in use. Two members
 * under one id make the mock abort ("rd_kafka_mock_cgrp_member_add" or
 * "_sync_set: Assertion `!member->resp' failed").
 *
 * So the devbroker defines the two entry points through which librdkafka
 * formats (snprintf, and glibc's fortified __snprintf_chk, which Debian's
 * build calls for a buffer of known size): a format of exactly "%p" is
 * written as the address followed by "-" and a serial number counting up
 * from 1 for the life of the process, and no id repeats however the
 * allocator reuses addresses. Every other format goes to glibc's
 * vsnprintf (or __vsnprintf_chk) untouched. Within 32 bytes: "0x" and 12
 * hex digits, "-", and up to 16 digits of serial.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>

/* glibc's fortified vsnprintf; no header declares it. */
extern int __vsnprintf_chk(char *s, size_t maxlen, int flag, size_t slen, const char *format,
			   va_list ap);
int __snprintf_chk(char *s, size_t maxlen, int flag, size_t slen, const char *format, ...);

static atomic_ullong serial;

/* snprintf through glibc's vsnprintf: this file's snprintf is the one
 * being defined. */
static int format(char *s, size_t maxlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(s, maxlen, fmt, ap);
	va_end(ap);
	return n;
}

static int is_pointer_alone(const char *fmt)
{
	return fmt[0] == '%' && fmt[1] == 'p' && fmt[2] == '\0';
}

static int unique_pointer(char *s, size_t maxlen, va_list ap)
{
	void *p = va_arg(ap, void *);
	return format(s, maxlen, "%p-%llu", p,
		      (unsigned long long)atomic_fetch_add(&serial, 1) + 1);
}

int snprintf(char *s, size_t maxlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n =
	    is_pointer_alone(fmt) ? unique_pointer(s, maxlen, ap) : vsnprintf(s, maxlen, fmt, ap);
	va_end(ap);
	return n;
}

int __snprintf_chk(char *s, size_t maxlen, int flag, size_t slen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n;
	if (is_pointer_alone(fmt) && slen >= maxlen)
		n = unique_pointer(s, maxlen, ap);
	else
		n = __vsnprintf_chk(s, maxlen, flag, slen, fmt, ap);
	va_end(ap);
	return n;
}
