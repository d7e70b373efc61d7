#!/bin/sh
# make run: the reference deployment (config/examples/mint-replica/) on this
# machine. From the binaries in BUILD_DIR and Debian's packages it starts
#   redis-server     sluice's (127.0.0.1:6390) and the caches' (18379)
#   sluice-devbroker the Kafka broker
#   docker-registry  the image registry (18000)
#   launcher         what runs the environments' instances (local/launcher.py)
#   haproxy          development 18100, staging 18200, production 18300 and
#                    https 18343; runtime API 18099
#   prometheus       18090, scraping every instance, the agent and the worker
#   load             steady traffic to the three load balancers (local/load.py)
#   sluice-agent     SLUICE_LISTEN (default 127.0.0.1:8080), and one
#   sluice-worker    for every kind (its /metrics on 18098)
# puts a first release ("initial") on every environment, sends one signed
# push of the example repository and shows the run: build to push,
# development's rolling update, staging's blue/green (promoted with
# sluicectl once its preview is up), production's canary 20 -> 50 -> 100
# with HAProxy's weights and the traffic each version gets; then it keeps
# the stack up until Ctrl-C, which stops everything it started.
#
# Everything it writes is in ./run/ (git-ignored): logs/, redis/, worker/,
# devbroker.bootstrap, the webhook secret, and mint-replica/, made afresh at
# each start: the example repository (repo/), the configuration that runs
# (etc/), the registry's storage, the instances, databases and caches of the
# environments, Prometheus' data.
#
# Environment: SLUICE_LISTEN=host:port for the agent (default
# 127.0.0.1:8080); SLUICE_DEMO_PAUSE, the length of the production canary's
# two pauses (default 20s; the pipeline file says 10m, which
# SLUICE_DEMO_PAUSE=10m keeps; a pause of a few seconds can end before
# Prometheus scraped the canary twice, and the analysis' noData: fail aborts);
# SLUICE_DEMO_WINDOWS=keep keeps the environments' deny windows, which the
# copy that runs leaves out by default: production's daily backup window
# (02:00-03:00 UTC) would otherwise hold a run started then for up to an
# hour.

set -u

build=${1:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "$build" 2>/dev/null && pwd) || { echo "run-local: no build directory ${1:-build}" >&2; exit 1; }
cd "$top" || exit 1

listen=${SLUICE_LISTEN:-127.0.0.1:8080}
pause=${SLUICE_DEMO_PAUSE:-20s}
windows=${SLUICE_DEMO_WINDOWS:-drop}
redis_port=6390
example=$top/config/examples/mint-replica
run=$top/run
logs=$run/logs
bootstrap=$run/devbroker.bootstrap
secret_file=$run/webhook-secret
state=$run/mint-replica
etc=$state/etc
repo=$state/repo
repository=sluice-example/mint-replica
# As config/examples/mint-replica/pipelines.d/mint-replica.yaml says.
registry=127.0.0.1:18000
image_repo=mint-replica/backend
admin=127.0.0.1:18099
prometheus=127.0.0.1:18090
cache_port=18379
ports="18000 18090 18098 18099 18100 18101 18102 18103 18200 18201 18202 18300 18301 18302 18343 18379"

pids=""
names=""

say() { printf '%s\n' "$*"; }

# Stops every process started here, newest first (the worker and agent
# before what they use; the launcher stops the instances): SIGTERM, up to
# 10 s, then SIGKILL.
stop_all() {
	rev_pids=""
	for p in $pids; do rev_pids="$p $rev_pids"; done
	for p in $rev_pids; do
		kill -0 "$p" 2>/dev/null || continue
		kill -TERM "$p" 2>/dev/null
		i=0
		while kill -0 "$p" 2>/dev/null && [ $i -lt 100 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	pids=""
}

# fail NAME WHY: says what went wrong with NAME, shows its log, stops the rest.
fail() {
	say "run-local: $1: $2" >&2
	if [ -s "$logs/$1.log" ]; then
		say "--- last lines of $logs/$1.log ---" >&2
		tail -n 20 "$logs/$1.log" >&2
	fi
	stop_all
	exit 1
}

trap 'say ""; say "stopping..."; stop_all; exit 0' INT TERM

# start NAME ARGV...: runs ARGV in its own session (so Ctrl-C reaches only
# this script, which then stops everything in order), output to logs/NAME.log.
start() {
	name=$1
	shift
	setsid "$@" >"$logs/$name.log" 2>&1 </dev/null &
	pids="$pids $!"
	names="$names $name:$!"
}

pid_of() {
	for entry in $names; do
		[ "${entry%%:*}" = "$1" ] && { echo "${entry#*:}"; return; }
	done
}

# wait_until NAME SECONDS COMMAND...: polls COMMAND every 0.1 s; fails when
# NAME exits first or the time runs out.
wait_until() {
	name=$1
	limit=$(($2 * 10))
	shift 2
	i=0
	until "$@" >/dev/null 2>&1; do
		kill -0 "$(pid_of "$name")" 2>/dev/null || fail "$name" "exited at start"
		[ $i -ge "$limit" ] && fail "$name" "not ready after $((limit / 10)) s"
		sleep 0.1
		i=$((i + 1))
	done
}

check_alive() {
	for entry in $names; do
		kill -0 "${entry#*:}" 2>/dev/null || fail "${entry%%:*}" "exited"
	done
}

# A port is taken when something accepts a connection on it. curl exits 7
# when the connection is refused; 3 and 6 (a malformed address) are left for
# the process that uses it to report.
port_free() {
	curl -s -o /dev/null --max-time 2 "http://$1/" </dev/null
	case $? in 3 | 6 | 7) return 0 ;; *) return 1 ;; esac
}

# step WHAT COMMAND...: runs COMMAND with its output in logs/setup.log.
step() {
	what=$1
	shift
	"$@" >>"$logs/setup.log" 2>&1 || fail setup "$what failed"
}

for b in sluice-agent sluice-worker sluice-devbroker sluicectl sluice-registry; do
	[ -x "$build/$b" ] || { echo "run-local: $build/$b is missing: run make first" >&2; exit 1; }
done
for t in redis-server redis-cli git curl openssl python3 setsid haproxy prometheus docker-registry \
	umoci skopeo; do
	command -v "$t" >/dev/null || { echo "run-local: $t is not installed: run make deps" >&2; exit 1; }
done
case $pause in
*[!0-9smh]* | '') echo "run-local: SLUICE_DEMO_PAUSE=$pause: expected a duration like 20s or 10m" >&2; exit 1 ;;
esac
case $windows in
keep | drop) ;;
*) echo "run-local: SLUICE_DEMO_WINDOWS=$windows: expected keep or drop" >&2; exit 1 ;;
esac

port_free "127.0.0.1:$redis_port" ||
	{ echo "run-local: port $redis_port (redis) is taken: stop what listens there" >&2; exit 1; }
port_free "$listen" ||
	{ echo "run-local: $listen (agent) is taken: stop what listens there or set SLUICE_LISTEN=host:port" >&2; exit 1; }
for p in $ports; do
	port_free "127.0.0.1:$p" ||
		{ echo "run-local: port $p (the example deployment) is taken: stop what listens there" >&2; exit 1; }
done

rm -rf "$state"
mkdir -p "$logs" "$run/redis" "$run/worker" "$state/tls" "$state/registry" "$state/cache"
: >"$logs/setup.log"

if [ ! -s "$secret_file" ]; then
	(umask 077 && printf '%s' "$(openssl rand -hex 32)" >"$secret_file") ||
		{ echo "run-local: cannot write $secret_file" >&2; exit 1; }
fi

# The certificate of production's https listener, from a CA of its own; the
# pipeline's TLS check trusts that CA (deploy/local-ca.pem in the example
# repository).
tls=$state/tls
step "the demo CA" openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=sluice demo CA" \
	-keyout "$tls/ca.key" -out "$tls/ca.pem"
step "the certificate request" openssl req -newkey rsa:2048 -nodes -subj "/CN=mint-replica.localhost" \
	-keyout "$tls/production.key" -out "$tls/production.csr"
printf 'subjectAltName=DNS:mint-replica.localhost,IP:127.0.0.1\n' >"$tls/san.ext"
step "the certificate" openssl x509 -req -in "$tls/production.csr" -CA "$tls/ca.pem" \
	-CAkey "$tls/ca.key" -CAcreateserial -days 90 -extfile "$tls/san.ext" -out "$tls/production.crt"
cat "$tls/production.crt" "$tls/production.key" >"$tls/production.pem"

# The example repository: the service, its CI scripts, migrations, deploy
# scripts and checks (config/examples/mint-replica/), plus deploy/local.env
# (where this machine keeps the environments' state) and the demo CA. A
# second commit on the branch bad-release adds a migration and a fail-rate
# of 20 % (send it with tools/send-push.sh: see the end).
say "creating the example repository $repo"
mkdir -p "$repo/app" "$repo/deploy"
cp "$example/app/server.py" "$example/app/build-image.sh" "$example/app/push-image.sh" "$repo/app/"
cp -R "$example/ci" "$example/db" "$example/checks" "$repo/"
cp "$example/deploy/"*.sh "$example/deploy/haproxy.py" "$repo/deploy/"
cp "$example/cache-flush.sh" "$repo/"
cat >"$repo/deploy/local.env" <<EOF
# Where this machine keeps the example's environments (tools/run-local.sh).
MINT_STATE=$state
SLUICE_BIN=$build
EOF
cp "$tls/ca.pem" "$repo/deploy/local-ca.pem"
printf 'dist/\n__pycache__/\n' >"$repo/.gitignore"
git_commit() {
	git -C "$repo" add -A &&
		git -C "$repo" -c user.name=sluice -c user.email=sluice@localhost commit -q -m "$1"
}
if ! { git -C "$repo" init -q -b main && git_commit "Mint Replica backend: accounts and transactions" &&
	git -C "$repo" checkout -q -b bad-release &&
	printf '0.2\n' >"$repo/app/fail-rate" &&
	printf 'CREATE TABLE budgets (id INTEGER PRIMARY KEY, category TEXT NOT NULL, limit_cents INTEGER NOT NULL);\n' \
		>"$repo/db/migrations/003_budgets.up.sql" &&
	printf 'DROP TABLE budgets;\n' >"$repo/db/migrations/003_budgets.down.sql" &&
	git_commit "Budgets (and a bug: one request in five fails)" &&
	git -C "$repo" checkout -q main; }; then
	echo "run-local: cannot create $repo" >&2
	exit 1
fi
sha=$(git -C "$repo" rev-parse HEAD)

# The configuration that runs: a copy of the example's, with its paths into
# run/ made absolute, the production canary's pauses set to $pause, the deny
# windows left out unless SLUICE_DEMO_WINDOWS=keep, and the local repository
# as its checkout.url (the agent clones no local path a webhook names).
mkdir -p "$etc/pipelines.d"
to_run="s|\"\\(@\\?\\)\\(\\.\\./\\)*run/|\"\\1$run/|"
no_windows='/^    windows: {deny: /d'
[ "$windows" = keep ] && no_windows=''
sed -e "$to_run" "$example/sluice.yaml" >"$etc/sluice.yaml"
{ sed -e "$to_run" -e "s|pause: {duration: 10m}|pause: {duration: $pause}|" -e "$no_windows" \
	"$example/pipelines.d/mint-replica.yaml" &&
	printf '\ncheckout: {url: "file://%s"}\n' "$repo"; } >"$etc/pipelines.d/mint-replica.yaml"
config=$etc/sluice.yaml
sed -e "s|@STATE@|$state|g" "$example/haproxy.cfg.in" >"$state/haproxy.cfg"
sed -e "s|@AGENT@|$listen|g" "$example/prometheus.yml.in" >"$state/prometheus.yml"
cat >"$state/registry.yml" <<EOF
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $state/registry}
  delete: {enabled: true}
http:
  addr: $registry
EOF
step "haproxy -c" haproxy -c -f "$state/haproxy.cfg"
step "promtool check config" promtool check config "$state/prometheus.yml"

rm -f "$bootstrap"
start redis redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
	--dir "$run/redis"
start cache redis-server --port "$cache_port" --bind 127.0.0.1 --save '' --appendonly no \
	--dir "$state/cache"
wait_until redis 10 redis-cli -p "$redis_port" ping
wait_until cache 10 redis-cli -p "$cache_port" ping
start devbroker "$build/sluice-devbroker" --bootstrap-file "$bootstrap"
wait_until devbroker 15 test -s "$bootstrap"
start registry docker-registry serve "$state/registry.yml"
wait_until registry 15 curl -sf -o /dev/null "http://$registry/v2/"
start launcher python3 "$example/local/launcher.py" "$state/launcher"
wait_until launcher 10 test -s "$state/launcher/launcher.pid"
start haproxy haproxy -db -f "$state/haproxy.cfg"
wait_until haproxy 10 python3 "$example/deploy/haproxy.py" "$admin" state production
start prometheus prometheus --config.file "$state/prometheus.yml" \
	--storage.tsdb.path "$state/prometheus" --web.listen-address "$prometheus"
wait_until prometheus 30 curl -sf -o /dev/null "http://$prometheus/-/ready"
say "stack up: redis 127.0.0.1:$redis_port, caches 127.0.0.1:$cache_port," \
	"devbroker $(cat "$bootstrap"), registry $registry, haproxy (runtime API $admin), prometheus $prometheus"

lb() { python3 "$example/deploy/haproxy.py" "$admin" "$@"; }

# The first release, as if deployed before: the service of the example
# repository as version "initial", built and pushed with the example's
# scripts and put on every environment with its deploy scripts. Staging's
# green drains (checked, no traffic), production's canary weighs 0.
say ""
say "the first release (\"initial\") on every environment"
first=$state/initial
mkdir -p "$first/app"
cp "$repo/app/server.py" "$first/app/"
printf 'initial\n' >"$first/app/VERSION"
step "building the first release" "$repo/app/build-image.sh" "$first/oci" initial "$first/app"
step "pushing the first release" env SLUICE_OUTPUT="$first/output" \
	"$repo/app/push-image.sh" "$first/oci" initial "$registry" "$image_repo"
image=$(sed -n 's/^image=//p' "$first/output")
[ -n "$image" ] || fail setup "push-image.sh wrote no image= line"
# deploy ENV SCRIPT SLOTS: SCRIPT of the example repository as the
# pipeline's provider runs it (SLOTS split into arguments).
deploy() {
	# shellcheck disable=SC2086
	step "$1: $2" env MINT_STATE="$state" SLUICE_ENV="$1" SLUICE_IMAGE="$image" \
		HAPROXY_ADMIN="$admin" HAPROXY_BACKEND="$1" PORT_A=18101 PORT_B=18102 PORT_SURGE=18103 \
		PORT_BLUE=18201 PORT_GREEN=18202 PORT_STABLE=18301 PORT_CANARY=18302 \
		"$repo/deploy/$2" $3
}
deploy development apply.sh "a b"
deploy staging apply.sh blue
deploy production apply.sh stable
step "draining staging/green" lb cmd "set server staging/green state drain"
for db in 0 1 2; do
	for key in accounts:1 accounts:2 budgets:summary; do
		redis-cli -p "$cache_port" -n "$db" SET "$key" cached >/dev/null
	done
done
say "  $image"
for env in development staging production; do
	say "  HAProxy $env:"
	lb state "$env" | sed 's/^/    /'
done

start load python3 "$example/local/load.py" "$state/traffic" \
	development=http://127.0.0.1:18100/ staging=http://127.0.0.1:18200/ \
	production=http://127.0.0.1:18300/
step "sluicectl validate" "$build/sluicectl" validate "$config" "$etc/pipelines.d/mint-replica.yaml"
start agent "$build/sluice-agent" --config "$config" --listen "$listen"
wait_until agent 20 curl -sf -o /dev/null "http://$listen/healthz"
start worker "$build/sluice-worker" --config "$config" --kind build,test,scan,push,deploy \
	--concurrency 3
sleep 1
kill -0 "$(pid_of worker)" 2>/dev/null || fail worker "exited at start"
say ""
say "sluice up: agent $listen, worker build,test,scan,push,deploy; traffic 10 requests/s per environment"
say "production's canary pauses: $pause each (SLUICE_DEMO_PAUSE; the pipeline file says 10m)"
if [ "$windows" = keep ]; then
	say "deny windows: as the pipeline file says (SLUICE_DEMO_WINDOWS=keep)"
else
	say "deny windows: left out (SLUICE_DEMO_WINDOWS=keep keeps the pipeline file's)"
fi

url=http://$listen/hooks/github
say ""
say "POST $url (push of main at $sha)"
answer=$(sh "$top/tools/send-push.sh" "$url" "$secret_file" "$repository" "$repo" main)
say "$answer"
run_id=$(printf '%s' "$answer" | sed -n 's/.*"runs": *\[ *"\([^"]*\)".*/\1/p')

ctl="$build/sluicectl --url http://$listen"

# env_line ENV: where ENV's deployment stands in run.json:
# "status|phase|step|steps|step name|colour|pause".
env_line() {
	python3 - "$state/run.json" "$1" <<'EOF'
import json, sys
try:
    run = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    sys.exit(0)
env = (run.get("environments") or {}).get(sys.argv[2]) or {}
st = env.get("strategy") or {}
ro = st.get("rollout") or {}
steps, i = ro.get("steps") or [], st.get("step")
name = steps[i - 1].get("name", "") if isinstance(i, int) and 0 < i <= len(steps) else ""
print("|".join("" if v is None else str(v) for v in (
    env.get("status"), st.get("status"), i, st.get("steps"), name, ro.get("color"),
    st.get("pause") or ro.get("pause"))))
EOF
}

# traffic ENV: the versions that answered ENV's load balancer lately.
traffic() {
	python3 - "$state/traffic/$1.json" <<'EOF'
import json, sys
try:
    t = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    sys.exit(0)
n = t["requests"] or 1
parts = ["%s %d%%" % (v, round(100.0 * c / n)) for v, c in sorted(t["by_version"].items())]
errors = sum(c for code, c in t["by_code"].items() if code != "200")
print("last %ds: %s; %d of %d failed" % (t["window_s"], ", ".join(parts), errors, t["requests"]))
EOF
}

# show_env ENV: HAProxy's servers of ENV and the traffic it served.
show_env() {
	lb state "$1" | sed "s/^/    /"
	say "    traffic $(traffic "$1")"
}

if [ -n "$run_id" ]; then
	last=""
	promoted=""
	last_development="" last_staging="" last_production=""
	ticks=0
	while :; do
		# The run as sluicectl shows it, whenever a stage or an environment
		# changes status; a rollout's steps are shown below, one line each.
		out=$($ctl show "$run_id" 2>&1)
		statuses=$(printf '%s\n' "$out" | sed '/^ENVIRONMENT  STRATEGY/,$d')
		if [ "$statuses" != "$last" ]; then
			say ""
			say "$out"
			last=$statuses
		fi
		$ctl show "$run_id" --json >"$state/run.json" 2>/dev/null
		status=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["status"])' \
			"$state/run.json" 2>/dev/null)
		case $status in queued | running | waiting | '') ;; *) break ;; esac
		ticks=$((ticks + 1))
		for env in development staging production; do
			line=$(env_line "$env")
			eval "before=\$last_$env"
			IFS='|' read -r status_ phase n total stepname color pausing <<EOF
$line
EOF
			if [ "$line" != "$before" ]; then
				eval "last_$env=\$line"
				case $status_ in
				waiting_window) say ""; say "$env waits for its deny window to open" ;;
				deploying)
					say ""
					say "$env: ${stepname:-deploying} (step ${n:-?} of ${total:-?}, ${phase:-starting})${color:+, release on $color}"
					show_env "$env"
					;;
				esac
			elif [ "$status_" = deploying ] && [ $((ticks % 5)) -eq 0 ]; then
				say "  $env: $(traffic "$env")"
			fi
			# Staging waits for a person once the preview colour is up:
			# show it, then promote as a reviewer would.
			if [ "$env" = staging ] && [ "$pausing" = manual ] && [ -z "$promoted" ]; then
				case $color in blue) port=18201 ;; green) port=18202 ;; *) port="" ;; esac
				say ""
				say "staging: the release is up on ${color:-the preview colour} (preview), traffic still on the other colour"
				if [ -n "$port" ]; then
					say "  \$ curl http://127.0.0.1:$port/version"
					say "  $(curl -s "http://127.0.0.1:$port/version")"
				fi
				show_env staging
				say ""
				say "\$ sluicectl promote $run_id staging --reason \"make run demo\" --by run-local"
				$ctl promote "$run_id" staging --reason "make run demo" --by run-local
				promoted=yes
			fi
		done
		check_alive
		sleep 1
	done
	say ""
	say "run $run_id $status"
	for env in development staging production; do
		say "  HAProxy $env:"
		show_env "$env"
	done
	for stage in build test integration-test security-scan push deploy@development \
		deploy@staging deploy@production; do
		say ""
		say "\$ sluicectl logs $run_id $stage"
		$ctl logs "$run_id" "$stage"
	done
else
	say "the agent started no run: see $logs/agent.log"
fi

cat <<EOF

The stack is running. Logs are in $logs/.
  load balancers: development http://127.0.0.1:18100/  staging http://127.0.0.1:18200/
                  production http://127.0.0.1:18300/ (https 18343)
  Prometheus:     http://$prometheus/   registry: http://$registry/v2/_catalog
  HAProxy:        python3 $example/deploy/haproxy.py $admin state production
  dashboard:      http://$listen/
  try:
    $ctl runs
    $ctl show ${run_id:-RUN}
    $ctl logs ${run_id:-RUN} deploy@production
  a release with a bug (branch bad-release: one request in five fails; a migration):
    sh tools/send-push.sh $url $secret_file $repository $repo main bad-release
Ctrl-C stops everything.
EOF

while :; do
	check_alive
	sleep 1
done
