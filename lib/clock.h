/* clock: wall-clock and monotonic milliseconds.
 *
 * Wall-clock time goes through one function so that tests can move it
 * (clock_set_offset_ms); durations and timeouts use the monotonic clock.
 */
#ifndef SLUICE_CLOCK_H
#define SLUICE_CLOCK_H

#include <stdint.h>
#include <stddef.h>

int64_t clock_now_ms(void);
int64_t clock_mono_ms(void);
void clock_set_offset_ms(int64_t offset);
/* Formats ms since the epoch as RFC 3339 UTC with milliseconds. */
void clock_format_rfc3339(int64_t ms, char *out, size_t len);

#endif
