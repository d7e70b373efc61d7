/* Tests for queue/kafka against an in-process librdkafka mock cluster:
 * delivery reports, consumption through a group on the libevent loop, the
 * contiguous-offset rule, pause/resume, producer shutdown, broker lists. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "queue/kafka.h"

#define MAXMSG 512

struct cluster {
	rd_kafka_t *rk; /* owns the mock cluster */
	rd_kafka_mock_cluster_t *mc;
	const char *bootstraps;
};

static void silent_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	(void)rk;
	(void)level;
	(void)fac;
	(void)buf;
}

static void cluster_start(struct cluster *cl, const char *topic, int partitions)
{
	char errstr[256];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	assert_int_equal(
	    rd_kafka_conf_set(conf, "test.mock.num.brokers", "1", errstr, sizeof(errstr)),
	    RD_KAFKA_CONF_OK);
	rd_kafka_conf_set_log_cb(conf, silent_log);
	cl->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	assert_non_null(cl->rk);
	cl->mc = rd_kafka_handle_mock_cluster(cl->rk);
	assert_non_null(cl->mc);
	assert_int_equal(rd_kafka_mock_topic_create(cl->mc, topic, partitions, 1), 0);
	cl->bootstraps = rd_kafka_mock_cluster_bootstraps(cl->mc);
}

static void cluster_stop(struct cluster *cl)
{
	rd_kafka_destroy(cl->rk);
}

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* --- running the loop until a condition holds ------------------------------ */

struct waiter {
	struct event_base *base;
	int (*cond)(void *);
	void *arg;
	int64_t deadline_us;
};

static void waiter_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct waiter *w = arg;
	if ((w->cond && w->cond(w->arg)) || now_us() >= w->deadline_us)
		event_base_loopbreak(w->base);
}

/* Runs the loop until cond(arg) is true or timeout_ms passes; cond NULL just
 * runs for timeout_ms. Returns cond's final value (0 without cond). */
static int run_until(struct event_base *base, int (*cond)(void *), void *arg, int timeout_ms)
{
	struct waiter w = {base, cond, arg, now_us() + (int64_t)timeout_ms * 1000};
	struct event *tick = event_new(base, -1, EV_PERSIST, waiter_tick, &w);
	struct timeval tv = {0, 1000};
	assert_non_null(tick);
	assert_int_equal(event_add(tick, &tv), 0);
	if (!cond || !cond(arg))
		event_base_dispatch(base);
	event_free(tick);
	return cond ? cond(arg) : 0;
}

/* --- producing ------------------------------------------------------------- */

struct reports {
	int ok;
	int failed;
	int refused; /* of the failed, those Kafka will never take */
	char last_err[128];
};

static void on_report(const char *err, int refused, void *arg)
{
	struct reports *r = arg;
	if (err) {
		r->failed++;
		r->refused += refused;
		snprintf(r->last_err, sizeof(r->last_err), "%s", err);
	} else {
		r->ok++;
	}
}

static int reported(void *arg)
{
	const struct reports *r = arg;
	return r->ok + r->failed > 0;
}

static void produce_indexed(struct kafka_producer *p, const char *topic, int i, int nkeys,
			    struct reports *r)
{
	char key[32], value[32];
	snprintf(key, sizeof(key), "run-%d", i % nkeys);
	snprintf(value, sizeof(value), "value-%d", i);
	char err[128];
	assert_int_equal(
	    kafka_produce(p, topic, key, value, strlen(value), on_report, r, err, sizeof(err)), 0);
}

/* --- consuming ------------------------------------------------------------- */

struct sink {
	struct kafka_consumer *c;
	int received;
	int seen[MAXMSG];
	int64_t offset[MAXMSG];
	int32_t key_partition[MAXMSG]; /* by key index; -1 unseen */
	int last_index_of_key[MAXMSG];
	int misordered;
	int mismatched;
	int hold;			     /* keep tickets instead of marking done */
	struct kafka_ticket *ticket[MAXMSG]; /* by message index when hold */
	struct kafka_ticket *pinned[MAXMSG]; /* tickets a test looks at later */
	int64_t last_us;
	int nkeys;
};

static void sink_init(struct sink *s, int nkeys, int hold)
{
	memset(s, 0, sizeof(*s));
	s->nkeys = nkeys;
	s->hold = hold;
	for (int i = 0; i < MAXMSG; i++) {
		s->key_partition[i] = -1;
		s->last_index_of_key[i] = -1;
	}
}

static void on_message(const struct kafka_message *m, struct kafka_ticket *t, void *arg)
{
	struct sink *s = arg;
	char value[32] = "", key[32] = "";
	int i = -1, k = -1;
	s->last_us = now_us();
	if (m->len < sizeof(value))
		memcpy(value, m->value, m->len);
	if (m->key && m->key_len < sizeof(key))
		memcpy(key, m->key, m->key_len);
	if (sscanf(value, "value-%d", &i) != 1 || i < 0 || i >= MAXMSG ||
	    sscanf(key, "run-%d", &k) != 1 || k != i % s->nkeys) {
		s->mismatched++;
		kafka_consumer_done(s->c, t);
		return;
	}
	s->received++;
	s->seen[i]++;
	s->offset[i] = m->offset;
	if (s->key_partition[k] >= 0 && s->key_partition[k] != m->partition)
		s->misordered++;
	if (s->last_index_of_key[k] > i)
		s->misordered++;
	s->key_partition[k] = m->partition;
	s->last_index_of_key[k] = i;
	if (s->hold) {
		/* Delivered again after another rebalance: the ticket it had
		 * since is revoked and stands for nothing any more (a worker
		 * marks it done as it takes the new one). */
		if (s->ticket[i] && s->ticket[i] != s->pinned[i])
			kafka_consumer_done(s->c, s->ticket[i]);
		s->ticket[i] = t;
	} else
		kafka_consumer_done(s->c, t);
}

struct progress {
	struct sink *sink;
	struct reports *reports;
	int want_received;
	int want_reports;
};

static int progress_reached(void *arg)
{
	struct progress *p = arg;
	return p->sink->received >= p->want_received &&
	       (!p->reports || p->reports->ok + p->reports->failed >= p->want_reports);
}

static struct kafka_consumer *consumer_open(struct event_base *base, const struct cluster *cl,
					    const char *group, const char *topic, struct sink *s,
					    const struct kafka_consumer_opts *opts)
{
	char err[256] = "";
	const char *topics[] = {topic};
	struct kafka_consumer *c =
	    opts ? kafka_consumer_new_opts(base, cl->bootstraps, group, topics, 1, on_message, s,
					   opts, err, sizeof(err))
		 : kafka_consumer_new(base, cl->bootstraps, group, topics, 1, on_message, s, err,
				      sizeof(err));
	if (!c)
		fail_msg("consumer: %s", err);
	s->c = c;
	return c;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

/* --- shared fixture --------------------------------------------------------- */

/* The mock cluster waits 3 s before forming a new group, so every group the
 * tests need is started here and they form side by side while the first test
 * runs the loop. */
struct fixture {
	struct cluster cl;
	struct event_base *base;
	struct kafka_producer *p;
	struct sink flow, ordered, paused;
	struct kafka_consumer *c_flow, *c_ordered, *c_paused;
	struct reports r_ordered, r_paused;
};

/* The mock holds a rejoin for the session timeout less 1 s, and a first join
 * for 3 s, which the session must outlast. */
static const struct kafka_consumer_opts quick_group = {.session_timeout_ms = 4000};

enum { N_ORDERED = 10 };

static int setup(void **state)
{
	static struct fixture fx;
	char err[256] = "";
	memset(&fx, 0, sizeof(fx));
	cluster_start(&fx.cl, "jobs", 4);
	assert_int_equal(rd_kafka_mock_topic_create(fx.cl.mc, "ordered", 1, 1), 0);
	assert_int_equal(rd_kafka_mock_topic_create(fx.cl.mc, "paused", 2, 1), 0);
	assert_int_equal(rd_kafka_mock_topic_create(fx.cl.mc, "typed", 1, 1), 0);
	fx.base = event_base_new();
	assert_non_null(fx.base);
	fx.p = kafka_producer_new(fx.base, fx.cl.bootstraps, err, sizeof(err));
	assert_non_null(fx.p);

	sink_init(&fx.flow, 20, 0);
	fx.c_flow = consumer_open(fx.base, &fx.cl, "workers", "jobs", &fx.flow, NULL);

	for (int i = 0; i < N_ORDERED; i++)
		produce_indexed(fx.p, "ordered", i, 1, &fx.r_ordered);
	sink_init(&fx.ordered, 1, 1);
	fx.c_ordered =
	    consumer_open(fx.base, &fx.cl, "ordered-group", "ordered", &fx.ordered, &quick_group);

	sink_init(&fx.paused, 4, 0);
	fx.c_paused = consumer_open(fx.base, &fx.cl, "paused-group", "paused", &fx.paused, NULL);
	kafka_consumer_pause(fx.c_paused); /* before the group assigned anything */
	for (int i = 0; i < 4; i++)
		produce_indexed(fx.p, "paused", i, 4, &fx.r_paused);
	*state = &fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	kafka_consumer_free(fx->c_flow);
	kafka_consumer_free(fx->c_ordered);
	kafka_consumer_free(fx->c_paused);
	kafka_producer_free(fx->p, 1000);
	event_base_free(fx->base);
	cluster_stop(&fx->cl);
	return 0;
}

/* --- tests ----------------------------------------------------------------- */

static void every_message_is_reported_and_consumed_once_in_key_order(void **state)
{
	enum { N = 300, NKEYS = 20, ROUNDS = 60 };
	struct fixture *fx = *state;
	struct sink *s = &fx->flow;
	struct reports r = {0};
	for (int i = 0; i < N; i++)
		produce_indexed(fx->p, "jobs", i, NKEYS, &r);
	assert_true(kafka_producer_outstanding(fx->p) > 0);
	struct progress want = {s, &r, N, N};
	assert_true(run_until(fx->base, progress_reached, &want, 15000));
	assert_int_equal(r.ok, N);
	assert_int_equal(r.failed, 0);
	assert_int_equal(s->mismatched, 0);
	assert_int_equal(s->misordered, 0);
	for (int i = 0; i < N; i++)
		assert_int_equal(s->seen[i], 1);
	assert_int_equal(kafka_consumer_assigned(fx->c_flow), 4);
	/* Keys spread over more than one partition. */
	int spread = 0;
	for (int k = 1; k < NKEYS; k++)
		spread |= s->key_partition[k] != s->key_partition[0];
	assert_true(spread);

	/* Produce->consume latency of single messages at random moments
	 * relative to the consumer's fetch cycle. */
	static int64_t lat[ROUNDS];
	srand(7);
	for (int j = 0; j < ROUNDS; j++) {
		run_until(fx->base, NULL, NULL, rand() % 20);
		int64_t t0 = now_us();
		produce_indexed(fx->p, "jobs", N + j, NKEYS, &r);
		want.want_received = N + j + 1;
		want.want_reports = N + j + 1;
		assert_true(run_until(fx->base, progress_reached, &want, 5000));
		lat[j] = s->last_us - t0;
	}
	assert_int_equal(kafka_producer_outstanding(fx->p), 0);
	qsort(lat, ROUNDS, sizeof(lat[0]), cmp_i64);
	print_message("produce->consume latency: p50 %.2f ms, p90 %.2f ms, max %.2f ms\n",
		      (double)lat[ROUNDS / 2] / 1000, (double)lat[ROUNDS * 9 / 10] / 1000,
		      (double)lat[ROUNDS - 1] / 1000);
	assert_true(lat[ROUNDS / 2] < 100000);
}

static void a_new_member_resumes_after_the_contiguous_done_prefix(void **state)
{
	struct fixture *fx = *state;
	struct sink *a = &fx->ordered;
	struct progress want = {a, &fx->r_ordered, N_ORDERED, N_ORDERED};
	assert_true(run_until(fx->base, progress_reached, &want, 15000));
	assert_int_equal(fx->r_ordered.ok, N_ORDERED);
	for (int i = 0; i < N_ORDERED; i++)
		assert_int_equal(a->offset[i], i);
	/* Out of order within the prefix: 2 and 0 store nothing past 0, then 1
	 * completes 0..2. 4 and 5 are done but 3 is not, so they stay uncommitted. */
	int done[] = {2, 0, 1, 5, 4};
	for (size_t i = 0; i < sizeof(done) / sizeof(done[0]); i++) {
		kafka_consumer_done(fx->c_ordered, a->ticket[done[i]]);
		a->ticket[done[i]] = NULL;
	}
	kafka_consumer_free(fx->c_ordered); /* drops the tickets of 3 and 6..9 */

	static struct sink b;
	sink_init(&b, 1, 0);
	fx->c_ordered =
	    consumer_open(fx->base, &fx->cl, "ordered-group", "ordered", &b, &quick_group);
	want = (struct progress){&b, NULL, N_ORDERED - 3, 0};
	assert_true(run_until(fx->base, progress_reached, &want, 15000));
	run_until(fx->base, NULL, NULL, 200); /* nothing more arrives */
	assert_int_equal(b.received, N_ORDERED - 3);
	for (int i = 0; i < N_ORDERED; i++)
		assert_int_equal(b.seen[i], i >= 3 ? 1 : 0);
}

static int paused_assigned(void *arg)
{
	struct fixture *fx = arg;
	return kafka_consumer_assigned(fx->c_paused) == 2 && fx->r_paused.ok == 4;
}

static void pause_holds_delivery_even_for_later_assignments_and_resume_restarts(void **state)
{
	struct fixture *fx = *state;
	struct sink *s = &fx->paused;
	/* Paused in setup, before the group assigned the partitions. */
	assert_true(run_until(fx->base, paused_assigned, fx, 10000));
	run_until(fx->base, NULL, NULL, 300);
	assert_int_equal(s->received, 0);

	kafka_consumer_resume(fx->c_paused);
	struct progress want = {s, NULL, 4, 0};
	assert_true(run_until(fx->base, progress_reached, &want, 5000));

	/* Paused while partitions are assigned. */
	kafka_consumer_pause(fx->c_paused);
	for (int i = 4; i < 8; i++)
		produce_indexed(fx->p, "paused", i, 4, &fx->r_paused);
	run_until(fx->base, NULL, NULL, 500);
	assert_int_equal(fx->r_paused.ok, 8);
	assert_int_equal(s->received, 4);
	kafka_consumer_resume(fx->c_paused);
	want.want_received = 8;
	assert_true(run_until(fx->base, progress_reached, &want, 5000));

	/* Resuming what is not paused must not restart the fetch. */
	kafka_consumer_resume(fx->c_paused);
	run_until(fx->base, NULL, NULL, 300);
	assert_int_equal(s->received, 8);
	for (int i = 0; i < 8; i++)
		assert_int_equal(s->seen[i], 1);
}

/* Two members of one group on a two-partition topic, the first paused. */
struct pair {
	struct kafka_consumer *a;
	struct kafka_consumer *b;
	struct sink *sb;
	struct reports *r;
	int n;
};

static int a_holds_both(void *arg)
{
	const struct pair *pr = arg;
	return kafka_consumer_assigned(pr->a) == 2;
}

static int both_hold_one_and_b_is_done(void *arg)
{
	const struct pair *pr = arg;
	return kafka_consumer_assigned(pr->a) == 1 && kafka_consumer_assigned(pr->b) == 1 &&
	       pr->r->ok == pr->n && pr->sb->received > 0;
}

static void a_paused_member_stays_paused_through_rebalances(void **state)
{
	enum { N = 16 };
	(void)state;
	struct cluster cl;
	cluster_start(&cl, "shared", 2);
	struct event_base *base = event_base_new();
	char err[256] = "";
	struct kafka_producer *p = kafka_producer_new(base, cl.bootstraps, err, sizeof(err));
	assert_non_null(p);
	static struct sink a, b;
	sink_init(&a, 8, 0);
	sink_init(&b, 8, 0);
	struct reports r = {0};
	struct pair pr = {NULL, NULL, &b, &r, N};
	pr.a = consumer_open(base, &cl, "shared-group", "shared", &a, &quick_group);
	kafka_consumer_pause(pr.a);
	assert_true(run_until(base, a_holds_both, &pr, 15000));

	/* A second member joins: the group revokes and reassigns everything. */
	pr.b = consumer_open(base, &cl, "shared-group", "shared", &b, &quick_group);
	for (int i = 0; i < N; i++)
		produce_indexed(p, "shared", i, 8, &r);
	assert_true(run_until(base, both_hold_one_and_b_is_done, &pr, 15000));
	run_until(base, NULL, NULL, 500);
	assert_int_equal(a.received, 0);
	assert_true(b.received < N); /* the keys reach both partitions */

	/* It leaves again: the first member gets both partitions, still paused. */
	kafka_consumer_free(pr.b);
	assert_true(run_until(base, a_holds_both, &pr, 15000));
	run_until(base, NULL, NULL, 500);
	assert_int_equal(a.received, 0);

	kafka_consumer_resume(pr.a);
	struct progress want = {&a, NULL, N - b.received, 0};
	assert_true(run_until(base, progress_reached, &want, 5000));
	run_until(base, NULL, NULL, 300);
	for (int i = 0; i < N; i++)
		assert_int_equal(a.seen[i] + b.seen[i], 1);
	assert_int_equal(a.misordered + b.misordered, 0);
	kafka_consumer_free(pr.a);
	kafka_producer_free(p, 1000);
	event_base_free(base);
	cluster_stop(&cl);
}

struct revoke_pair {
	struct kafka_consumer *a, *b;
	struct sink *sb;
};

static int b_holds_one(void *arg)
{
	struct revoke_pair *p = arg;
	return kafka_consumer_assigned(p->a) == 1 && kafka_consumer_assigned(p->b) == 1;
}

/* A member holding tickets loses its partitions to a rebalance: those not
 * done say they were revoked (the new owner consumes their messages again),
 * and are kept until done; those done already, behind one not done, are
 * freed rather than kept for the consumer's life. */
static void tickets_of_a_revoked_partition_say_so_and_done_ones_are_freed(void **state)
{
	enum { N = 8 };
	(void)state;
	struct cluster cl;
	cluster_start(&cl, "revoked", 2);
	struct event_base *base = event_base_new();
	char err[256] = "";
	struct kafka_producer *p = kafka_producer_new(base, cl.bootstraps, err, sizeof(err));
	assert_non_null(p);
	static struct sink a, b;
	sink_init(&a, N, 1);
	sink_init(&b, N, 0);
	struct reports r = {0};
	struct revoke_pair pr = {NULL, NULL, &b};
	pr.a = consumer_open(base, &cl, "revoke-group", "revoked", &a, &quick_group);
	for (int i = 0; i < N; i++)
		produce_indexed(p, "revoked", i, N, &r);
	struct progress want = {&a, &r, N, N};
	assert_true(run_until(base, progress_reached, &want, 15000));
	for (int i = 0; i < N; i++)
		assert_false(kafka_ticket_revoked(a.ticket[i]));
	/* Of each partition, all but its first message done. */
	int first[2] = {-1, -1};
	for (int i = 0; i < N; i++) {
		int part = a.key_partition[i];
		if (first[part] < 0 || a.offset[i] < a.offset[first[part]])
			first[part] = i;
	}
	for (int i = 0; i < N; i++) {
		if (i != first[0] && i != first[1]) {
			kafka_consumer_done(pr.a, a.ticket[i]);
			a.ticket[i] = NULL;
		}
	}

	/* A second member joins: every partition is revoked, then shared. The
	 * messages not done come again, to a or b, with tickets of their own. */
	struct kafka_ticket *before[N];
	memcpy(before, a.ticket, sizeof(before));
	memcpy(a.pinned, a.ticket, sizeof(before));
	pr.b = consumer_open(base, &cl, "revoke-group", "revoked", &b, &quick_group);
	assert_true(run_until(base, b_holds_one, &pr, 15000));
	size_t held = 0;
	for (int i = 0; i < N; i++) {
		if (before[i]) {
			held++;
			assert_true(kafka_ticket_revoked(before[i]));
		}
	}
	assert_int_equal(held, (first[0] >= 0) + (first[1] >= 0));
	/* Done, those of the messages that came again: the orphans left are
	 * the tickets held from before, not the ones done before. */
	for (int i = 0; i < N; i++)
		if (a.ticket[i] && a.ticket[i] != before[i])
			kafka_consumer_done(pr.a, a.ticket[i]);
	assert_int_equal(kafka_consumer_orphans(pr.a), held);
	for (int i = 0; i < N; i++)
		if (before[i])
			kafka_consumer_done(pr.a, before[i]);
	assert_int_equal(kafka_consumer_orphans(pr.a), 0);
	kafka_consumer_free(pr.b);
	kafka_consumer_free(pr.a);
	kafka_producer_free(p, 1000);
	event_base_free(base);
	cluster_stop(&cl);
}

/* SyncGroup's Kafka API key; librdkafka keeps its list of keys private. */
enum { API_SYNC_GROUP = 14 };

static int first_sync_failed(void *arg)
{
	const struct cluster *cl = arg;
	size_t left = 1;
	assert_int_equal(rd_kafka_mock_broker_error_stack_cnt(cl->mc, 1, API_SYNC_GROUP, &left), 0);
	return left == 0;
}

/* A worker stopped while its group rebalances can close between its first
 * JoinGroup and its first assignment. With librdkafka 2.0's cooperative-sticky
 * assignor that aborted the process (issue #4312). */
static void a_consumer_closed_before_its_first_assignment_closes_cleanly(void **state)
{
	(void)state;
	struct cluster cl;
	cluster_start(&cl, "unassigned", 1);
	/* The member joins the group, but its first SyncGroup fails, and the
	 * next rejoin takes the mock seconds: it is closed in between. */
	assert_int_equal(
	    rd_kafka_mock_broker_push_request_error_rtts(
		cl.mc, 1, API_SYNC_GROUP, 1, RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS, 0),
	    0);
	struct event_base *base = event_base_new();
	static struct sink s;
	sink_init(&s, 1, 0);
	struct kafka_consumer *c =
	    consumer_open(base, &cl, "unassigned-group", "unassigned", &s, &quick_group);
	assert_true(run_until(base, first_sync_failed, &cl, 10000));
	assert_int_equal(kafka_consumer_assigned(c), 0);
	kafka_consumer_free(c);
	event_base_free(base);
	cluster_stop(&cl);
}

static int is_assigned(void *arg)
{
	return kafka_consumer_assigned(arg) > 0;
}

/* Told to stop while its broker is away, a consumer stops all the same:
 * librdkafka's close would wait for the group coordinator without end. */
static void a_consumer_closes_when_its_broker_is_gone(void **state)
{
	(void)state;
	struct cluster cl;
	cluster_start(&cl, "gone", 1);
	struct event_base *base = event_base_new();
	static struct sink s;
	sink_init(&s, 1, 0);
	struct kafka_consumer *c = consumer_open(base, &cl, "gone-group", "gone", &s, &quick_group);
	assert_true(run_until(base, is_assigned, c, 15000));
	assert_int_equal(rd_kafka_mock_broker_set_down(cl.mc, 1), 0);
	run_until(base, NULL, NULL, 500);
	int64_t t0 = now_us();
	kafka_consumer_free(c);
	/* Returns: it waited for the coordinator a bounded time, not for ever. */
	assert_true(now_us() - t0 < 30 * 1000000LL);
	event_base_free(base);
	cluster_stop(&cl);
}

static int all_reported(void *arg)
{
	const struct reports *r = arg;
	return r->ok + r->failed >= 3;
}

static void producer_rides_out_an_outage_and_free_fails_what_is_left(void **state)
{
	(void)state;
	struct cluster cl;
	cluster_start(&cl, "down", 1);
	struct event_base *base = event_base_new();
	char err[256] = "";
	struct kafka_producer *p = kafka_producer_new(base, cl.bootstraps, err, sizeof(err));
	assert_non_null(p);

	assert_int_equal(rd_kafka_mock_broker_set_down(cl.mc, 1), 0);
	struct reports r = {0};
	for (int i = 0; i < 3; i++)
		produce_indexed(p, "down", i, 1, &r);
	run_until(base, NULL, NULL, 1000);
	assert_int_equal(r.ok + r.failed, 0);
	assert_int_equal(rd_kafka_mock_broker_set_up(cl.mc, 1), 0);
	assert_true(run_until(base, all_reported, &r, 10000));
	assert_int_equal(r.ok, 3);
	assert_int_equal(r.failed, 0);

	assert_int_equal(rd_kafka_mock_broker_set_down(cl.mc, 1), 0);
	r = (struct reports){0};
	for (int i = 0; i < 3; i++)
		produce_indexed(p, "down", i, 1, &r);
	run_until(base, NULL, NULL, 100);
	assert_int_equal(kafka_producer_outstanding(p), 3);
	kafka_producer_free(p, 200);
	assert_int_equal(r.ok, 0);
	assert_int_equal(r.failed, 3);
	assert_non_null(strstr(r.last_err, "urge"));
	event_base_free(base);
	cluster_stop(&cl);
}

/* A message Kafka will never take is told apart from one that failed for
 * now: larger than message.max.bytes, it is not queued at all; refused by
 * the broker as too large, its report says so. An outage is not a refusal
 * (above). */
static void a_message_kafka_never_takes_is_refused(void **state)
{
	(void)state;
	struct cluster cl;
	cluster_start(&cl, "refused", 1);
	struct event_base *base = event_base_new();
	char err[256] = "";
	struct kafka_producer *p = kafka_producer_new(base, cl.bootstraps, err, sizeof(err));
	assert_non_null(p);

	size_t len = 2 * 1024 * 1024;
	char *big = malloc(len);
	assert_non_null(big);
	memset(big, 'x', len);
	struct reports r = {0};
	err[0] = '\0';
	assert_int_equal(
	    kafka_produce(p, "refused", "k", big, len, on_report, &r, err, sizeof(err)),
	    KAFKA_REFUSED);
	assert_non_null(strstr(err, "too large"));
	free(big);
	assert_int_equal(r.ok + r.failed, 0);

	/* The broker answers the next Produce request (API key 0) "too large". */
	rd_kafka_mock_push_request_errors(cl.mc, 0, 1, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
	produce_indexed(p, "refused", 0, 1, &r);
	assert_true(run_until(base, reported, &r, 10000));
	assert_int_equal(r.failed, 1);
	assert_int_equal(r.refused, 1);

	/* The error is the broker's for that request only. */
	r = (struct reports){0};
	produce_indexed(p, "refused", 1, 1, &r);
	assert_true(run_until(base, reported, &r, 10000));
	assert_int_equal(r.ok, 1);

	kafka_producer_free(p, 1000);
	event_base_free(base);
	cluster_stop(&cl);
}

static void messages_carry_the_cloudevents_content_type(void **state)
{
	struct fixture *fx = *state;
	struct reports r = {0};
	produce_indexed(fx->p, "typed", 0, 1, &r);
	struct sink none;
	sink_init(&none, 1, 0);
	struct progress want = {&none, &r, 0, 1};
	assert_true(run_until(fx->base, progress_reached, &want, 5000));
	assert_int_equal(r.ok, 1);

	/* Read it back with a plain assigned consumer to see the headers. */
	char errstr[256];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_conf_set(conf, "bootstrap.servers", fx->cl.bootstraps, errstr, sizeof(errstr));
	rd_kafka_conf_set(conf, "group.id", "raw", errstr, sizeof(errstr));
	rd_kafka_conf_set_log_cb(conf, silent_log);
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	assert_non_null(rk);
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(l, "typed", 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
	assert_int_equal(rd_kafka_assign(rk, l), 0);
	rd_kafka_topic_partition_list_destroy(l);
	rd_kafka_message_t *m = NULL;
	for (int i = 0; i < 50 && !m; i++) {
		m = rd_kafka_consumer_poll(rk, 100);
		if (m && m->err) {
			rd_kafka_message_destroy(m);
			m = NULL;
		}
	}
	assert_non_null(m);
	rd_kafka_headers_t *hdrs = NULL;
	assert_int_equal(rd_kafka_message_headers(m, &hdrs), 0);
	const void *v = NULL;
	size_t vlen = 0;
	assert_int_equal(rd_kafka_header_get_last(hdrs, "content-type", &v, &vlen), 0);
	assert_int_equal(vlen, strlen("application/cloudevents+json"));
	assert_memory_equal(v, "application/cloudevents+json", vlen);
	assert_int_equal(m->key_len, strlen("run-0"));
	assert_memory_equal(m->key, "run-0", m->key_len);
	rd_kafka_message_destroy(m);
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
}

static char *write_temp(const char *content)
{
	char *path = strdup("/tmp/sluice-kafka-XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
	close(fd);
	return path;
}

static void brokers_resolve_reads_and_trims_the_first_line_of_a_file(void **state)
{
	(void)state;
	char err[256] = "";
	char *path = write_temp("  127.0.0.1:9092,127.0.0.1:9093 \t\nignored\n");
	char arg[300];
	snprintf(arg, sizeof(arg), "@%s", path);
	char *list = kafka_brokers_resolve(arg, err, sizeof(err));
	assert_non_null(list);
	assert_string_equal(list, "127.0.0.1:9092,127.0.0.1:9093");
	free(list);
	unlink(path);
	free(path);

	list = kafka_brokers_resolve("kafka-1:9092", err, sizeof(err));
	assert_string_equal(list, "kafka-1:9092");
	free(list);
}

static void brokers_resolve_rejects_missing_empty_and_blank_sources(void **state)
{
	(void)state;
	char err[256] = "";
	assert_null(kafka_brokers_resolve("@/nonexistent/sluice-brokers", err, sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent/sluice-brokers"));
	assert_non_null(strstr(err, "No such file"));

	/* An empty file, and one whose first line is blank. */
	static const char *const empty[] = {"", "   \nlocalhost:9092\n"};
	for (size_t i = 0; i < sizeof(empty) / sizeof(empty[0]); i++) {
		char *path = write_temp(empty[i]);
		char arg[300];
		snprintf(arg, sizeof(arg), "@%s", path);
		err[0] = '\0';
		assert_null(kafka_brokers_resolve(arg, err, sizeof(err)));
		assert_non_null(strstr(err, "empty"));
		unlink(path);
		free(path);
	}

	err[0] = '\0';
	assert_null(kafka_brokers_resolve("", err, sizeof(err)));
	assert_non_null(strstr(err, "none configured"));
	assert_null(kafka_brokers_resolve(NULL, err, sizeof(err)));
}

static void clients_refuse_a_missing_broker_file_and_a_consumer_without_topics(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	char err[256] = "";
	assert_null(kafka_producer_new(base, "@/nonexistent/b", err, sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent/b"));
	err[0] = '\0';
	assert_null(kafka_consumer_new(base, "127.0.0.1:1", "g", NULL, 0, on_message, NULL, err,
				       sizeof(err)));
	assert_non_null(strstr(err, "topics"));
	event_base_free(base);
}

static void on_sigterm(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	*(int *)arg += 1;
}

static int is_positive(void *arg)
{
	return *(int *)arg > 0;
}

/* A fatal error on the idempotent producer (made with librdkafka's own
 * test hook): the producer says it failed and the process gets SIGTERM,
 * once, to stop and be started again; later messages are not delivered. */
static void a_fatal_producer_error_stops_the_process(void **state)
{
	(void)state;
	struct cluster cl;
	cluster_start(&cl, "fatal", 1);
	struct event_base *base = event_base_new();
	char err[256] = "";
	struct kafka_producer *p = kafka_producer_new(base, cl.bootstraps, err, sizeof(err));
	assert_non_null(p);
	int sigterms = 0;
	struct event *sig = evsignal_new(base, SIGTERM, on_sigterm, &sigterms);
	assert_non_null(sig);
	assert_int_equal(event_add(sig, NULL), 0);
	assert_false(kafka_producer_failed(p));

	assert_int_equal(rd_kafka_test_fatal_error(kafka_producer_handle(p),
						   RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
						   "made to fail by a test"),
			 RD_KAFKA_RESP_ERR_NO_ERROR);
	assert_true(run_until(base, is_positive, &sigterms, 5000));
	assert_true(kafka_producer_failed(p));
	struct reports r = {0};
	if (kafka_produce(p, "fatal", "k", "v", 1, on_report, &r, err, sizeof(err)) == 0)
		assert_true(run_until(base, reported, &r, 5000));
	assert_int_equal(r.ok, 0);
	run_until(base, NULL, NULL, 200);
	assert_int_equal(sigterms, 1);

	event_free(sig);
	kafka_producer_free(p, 1000);
	event_base_free(base);
	cluster_stop(&cl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(every_message_is_reported_and_consumed_once_in_key_order),
	    cmocka_unit_test(a_new_member_resumes_after_the_contiguous_done_prefix),
	    cmocka_unit_test(pause_holds_delivery_even_for_later_assignments_and_resume_restarts),
	    cmocka_unit_test(a_paused_member_stays_paused_through_rebalances),
	    cmocka_unit_test(tickets_of_a_revoked_partition_say_so_and_done_ones_are_freed),
	    cmocka_unit_test(a_consumer_closed_before_its_first_assignment_closes_cleanly),
	    cmocka_unit_test(a_consumer_closes_when_its_broker_is_gone),
	    cmocka_unit_test(producer_rides_out_an_outage_and_free_fails_what_is_left),
	    cmocka_unit_test(a_message_kafka_never_takes_is_refused),
	    cmocka_unit_test(messages_carry_the_cloudevents_content_type),
	    cmocka_unit_test(brokers_resolve_reads_and_trims_the_first_line_of_a_file),
	    cmocka_unit_test(brokers_resolve_rejects_missing_empty_and_blank_sources),
	    cmocka_unit_test(clients_refuse_a_missing_broker_file_and_a_consumer_without_topics),
	    cmocka_unit_test(a_fatal_producer_error_stops_the_process),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
