/* Fuzz target: deploy windows and durations as a pipeline file writes them.
 *
 * The input is parsed as a window ("Mon-Fri 22:00-06:00 UTC") and as a
 * duration ("1h30m"); a window that parses is normalized, read back, and
 * asked when it closes at a few instants.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "config/window.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = strndup((const char *)data, size);
	struct window w, back;
	size_t pos = 0;
	char why[200];

	if (!text)
		return 0;
	(void)config_parse_duration_ms(text);
	if (window_parse(text, &w, &pos, why, sizeof(why)) == 0) {
		json_t *j = window_to_json(&w, text);
		json_t *list = json_array();
		if (j && window_from_json(j, &back) == 0) {
			static const long long at[] = {0, 1700000000000LL, 1700003600000LL,
						       4102444800000LL};
			for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++)
				(void)window_closed_until(&back, 1, at[i]);
		}
		if (j && list && json_array_append(list, j) == 0)
			(void)window_list_closed_until(list, 1700000000000LL);
		json_decref(list);
		json_decref(j);
	} else if (pos > strlen(text)) {
		abort(); /* the error's offset must lie within the text */
	}
	free(text);
	return 0;
}
