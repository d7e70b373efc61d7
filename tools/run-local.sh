#!/bin/sh
# make run: starts the whole stack on this machine from the binaries in
# BUILD_DIR (redis-server, sluice-devbroker, sluice-agent, one sluice-worker
# for every kind) with config/examples/sluice.yaml, sends one signed push
# webhook exactly as GitHub would, shows the run progressing through its
# stages and environments (approving staging with sluicectl when it asks),
# then keeps the stack up until Ctrl-C, which stops everything it started.
#
# Everything it writes is in ./run/ (git-ignored): logs/, redis/, worker/,
# devbroker.bootstrap, the webhook secret and, on first use, example-repo/, a
# small git repository for the example pipeline to build.
#
# Environment: SLUICE_LISTEN=host:port for the agent (default 127.0.0.1:8080).
# Redis listens on 127.0.0.1:6390, as config/examples/sluice.yaml says.

set -u

build=${1:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "$build" 2>/dev/null && pwd) || { echo "run-local: no build directory ${1:-build}" >&2; exit 1; }
cd "$top" || exit 1

listen=${SLUICE_LISTEN:-127.0.0.1:8080}
redis_port=6390
config=$top/config/examples/sluice.yaml
run=$top/run
logs=$run/logs
bootstrap=$run/devbroker.bootstrap
secret_file=$run/webhook-secret
repo=$run/example-repo
repository=sluice-example/app

pids=""
names=""

say() { printf '%s\n' "$*"; }

# Stops every process started here, newest first (the worker and agent
# before the broker and Redis they use): SIGTERM, up to 10 s, then SIGKILL.
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

# A port is taken when something accepts a connection on it. curl exits 7
# when the connection is refused; 3 and 6 (a malformed address) are left for
# the process that uses it to report.
port_free() {
	curl -s -o /dev/null --max-time 2 "http://$1/" </dev/null
	case $? in 3 | 6 | 7) return 0 ;; *) return 1 ;; esac
}

for b in sluice-agent sluice-worker sluice-devbroker sluicectl; do
	[ -x "$build/$b" ] || { echo "run-local: $build/$b is missing: run make first" >&2; exit 1; }
done
for t in redis-server redis-cli git curl openssl python3 setsid; do
	command -v "$t" >/dev/null || { echo "run-local: $t is not installed: run make deps" >&2; exit 1; }
done

mkdir -p "$logs" "$run/redis" "$run/worker"

port_free "127.0.0.1:$redis_port" ||
	{ echo "run-local: port $redis_port (redis) is taken: stop what listens there" >&2; exit 1; }
port_free "$listen" ||
	{ echo "run-local: $listen (agent) is taken: stop what listens there or set SLUICE_LISTEN=host:port" >&2; exit 1; }

if [ ! -s "$secret_file" ]; then
	(umask 077 && printf '%s' "$(openssl rand -hex 32)" >"$secret_file") ||
		{ echo "run-local: cannot write $secret_file" >&2; exit 1; }
fi
secret=$(cat "$secret_file")

# The example project: a "build" that stamps a greeter script into dist/, a
# test and an integration test that run it, a scan, a push to a registry
# directory and a deploy to an environment's directory
# (config/examples/pipelines.d/reference.yaml). A repository from before
# the deploy script existed is made anew.
if [ ! -f "$repo/deploy.sh" ]; then
	say "creating the example repository $repo"
	rm -rf "$repo"
	mkdir -p "$repo"
	cat >"$repo/greet.sh.in" <<'EOF'
#!/bin/sh
echo "${GREETING:-hello}, ${1:-world} (version @VERSION@)"
EOF
	cat >"$repo/build.sh" <<'EOF'
#!/bin/sh
# Builds dist/greet, stamped with the version given (the commit).
set -eu
mkdir -p dist
sed "s/@VERSION@/${1:-dev}/" greet.sh.in >dist/greet
chmod +x dist/greet
echo "built dist/greet version ${1:-dev}"
./dist/greet sluice
EOF
	cat >"$repo/test.sh" <<'EOF'
#!/bin/sh
set -eu
./build.sh test >/dev/null
out=$(GREETING=hello ./dist/greet tester)
want="hello, tester (version test)"
if [ "$out" != "$want" ]; then
	echo "not ok 1 - greet: got '$out', want '$want'"
	exit 1
fi
echo "ok 1 - greet says hello"
EOF
	cat >"$repo/integration-test.sh" <<'EOF'
#!/bin/sh
# The greeter as its users call it, with their names.
set -eu
./build.sh integration >/dev/null
for name in alice bob; do
	out=$(./dist/greet "$name")
	case $out in
	*", $name "*) echo "ok - greets $name" ;;
	*) echo "not ok - greets $name: got '$out'"; exit 1 ;;
	esac
done
EOF
	cat >"$repo/scan.sh" <<'EOF'
#!/bin/sh
# A stand-in security scan: no file of the commit may hold a private key.
set -eu
files=$(find . -path ./.git -prune -o -type f -print)
if grep -l -e '-----BEGIN [A-Z ]*PRIVATE KEY-----' $files; then
	echo "scan: the files above hold private keys"
	exit 1
fi
echo "scan: $(printf '%s\n' $files | wc -l) files, no private keys"
EOF
	cat >"$repo/push.sh" <<'EOF'
#!/bin/sh
# "Pushes" the image of version $1: dist/greet into the registry directory.
set -eu
./build.sh "$1" >/dev/null
mkdir -p "$REGISTRY"
cp dist/greet "$REGISTRY/greet-$1.new"
mv "$REGISTRY/greet-$1.new" "$REGISTRY/greet-$1"
echo "pushed $REGISTRY/greet-$1"
EOF
	cat >"$repo/deploy.sh" <<'EOF'
#!/bin/sh
# Rolls version $1 out to $SLUICE_ENV: the pushed image becomes the
# environment's release, then answers once as a smoke test.
set -eu
image=$REGISTRY/greet-$1
[ -x "$image" ] || { echo "no image $image: was it pushed?"; exit 1; }
target=$CLUSTERS/$SLUICE_ENV
mkdir -p "$target"
cp "$image" "$target/greet.new"
mv "$target/greet.new" "$target/greet"
echo "deployed version $1 to $SLUICE_ENV ($DOMAIN)"
"$target/greet" "$DOMAIN"
EOF
	chmod +x "$repo/build.sh" "$repo/test.sh" "$repo/integration-test.sh" "$repo/scan.sh" \
		"$repo/push.sh" "$repo/deploy.sh"
	printf 'dist/\n' >"$repo/.gitignore"
	if ! { git -C "$repo" init -q -b main && git -C "$repo" add -A &&
		git -C "$repo" -c user.name=sluice -c user.email=sluice@localhost \
			commit -q -m "A greeter, its build and its test"; }; then
		echo "run-local: cannot create $repo" >&2
		exit 1
	fi
fi
sha=$(git -C "$repo" rev-parse HEAD)

rm -f "$bootstrap"
start redis redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
	--dir "$run/redis"
wait_until redis 10 redis-cli -p "$redis_port" ping
start devbroker "$build/sluice-devbroker" --bootstrap-file "$bootstrap"
wait_until devbroker 15 test -s "$bootstrap"
start agent "$build/sluice-agent" --config "$config" --listen "$listen"
wait_until agent 20 curl -sf -o /dev/null "http://$listen/healthz"
start worker "$build/sluice-worker" --config "$config" --kind build,test,scan,push,deploy \
	--concurrency 2
sleep 1
kill -0 "$(pid_of worker)" 2>/dev/null || fail worker "exited at start"
say "stack up: redis 127.0.0.1:$redis_port, devbroker $(cat "$bootstrap"), agent $listen, worker build,test,scan,push,deploy"

# One push webhook, as GitHub sends it for a push of main.
payload=$run/push.json
cat >"$payload" <<EOF
{
  "ref": "refs/heads/main",
  "before": "0000000000000000000000000000000000000000",
  "after": "$sha",
  "created": true,
  "deleted": false,
  "forced": false,
  "base_ref": null,
  "compare": "https://github.com/$repository/commit/$sha",
  "commits": [],
  "head_commit": {"id": "$sha", "message": "A greeter, its build and its test"},
  "repository": {
    "id": 1,
    "name": "app",
    "full_name": "$repository",
    "private": false,
    "default_branch": "main",
    "clone_url": "file://$repo"
  },
  "pusher": {"name": "sluice", "email": "sluice@localhost"},
  "sender": {"login": "sluice", "id": 1, "type": "User"}
}
EOF
signature=$(openssl dgst -sha256 -hmac "$secret" "$payload" | sed 's/^.*= *//')
delivery=$(cat /proc/sys/kernel/random/uuid)
url=http://$listen/hooks/github
say ""
say "POST $url (push of main at $sha)"
answer=$(curl -s -w '\n%{http_code}' -X POST "$url" \
	-H "User-Agent: GitHub-Hookshot/local" \
	-H "Content-Type: application/json" \
	-H "X-GitHub-Event: push" \
	-H "X-GitHub-Delivery: $delivery" \
	-H "X-GitHub-Hook-ID: 1" \
	-H "X-Hub-Signature-256: sha256=$signature" \
	--data-binary "@$payload")
code=$(printf '%s\n' "$answer" | tail -n 1)
body=$(printf '%s\n' "$answer" | sed '$d')
say "$code $body"
run_id=$(printf '%s' "$body" | sed -n 's/.*"runs": *\[ *"\([^"]*\)".*/\1/p')

ctl="$build/sluicectl --url http://$listen"
if [ -n "$run_id" ]; then
	# Show the run each time it changes, until it has finished.
	last=""
	while :; do
		out=$($ctl show "$run_id" 2>&1)
		if [ "$out" != "$last" ]; then
			say ""
			say "$out"
			last=$out
		fi
		json=$($ctl show "$run_id" --json 2>/dev/null)
		status=$(printf '%s' "$json" |
			python3 -c 'import json, sys; print(json.load(sys.stdin)["status"])' 2>/dev/null)
		case $status in succeeded | failed | cancelled | rejected | superseded) break ;; esac
		# Staging asks for an approval: give it, as a reviewer would.
		staging=$(printf '%s' "$json" | python3 -c 'import json, sys
print(json.load(sys.stdin).get("environments", {}).get("staging", {}).get("status", ""))' \
			2>/dev/null)
		if [ "$staging" = waiting_approval ]; then
			say ""
			say "\$ sluicectl approve $run_id staging --reason \"make run demo\" --by run-local"
			$ctl approve "$run_id" staging --reason "make run demo" --by run-local
		fi
		for entry in $names; do
			kill -0 "${entry#*:}" 2>/dev/null || fail "${entry%%:*}" "exited"
		done
		sleep 1
	done
	say ""
	say "run $run_id $status"
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
  webhook URL:  $url
  secret file:  $secret_file
  try:
    $ctl runs
    $ctl show ${run_id:-RUN}
    $ctl logs ${run_id:-RUN} build
    $ctl logs ${run_id:-RUN} deploy@production
  the push that was sent: $payload (signed with the secret over its bytes)
Ctrl-C stops everything.
EOF

while :; do
	for entry in $names; do
		kill -0 "${entry#*:}" 2>/dev/null || fail "${entry%%:*}" "exited"
	done
	sleep 1
done
