#!/bin/sh
# Sends one push webhook for a commit of a local git repository, signed with
# the webhook secret exactly as GitHub signs it. tools/run-local.sh sends
# the example's push with it; run it again to send another commit.
#
#   tools/send-push.sh URL SECRET_FILE REPOSITORY REPO_DIR [BRANCH [COMMIT]]
#
# URL: the agent's http://HOST:PORT/hooks/github; REPOSITORY: owner/name as
# the pipeline's trigger names it; BRANCH (default main) is the pushed ref,
# COMMIT (default BRANCH's head in REPO_DIR) its new head. The clone URL is
# GitHub's for REPOSITORY, as GitHub sends it (the agent clones no local path
# a webhook names): the pipeline builds REPO_DIR through its checkout.url.
# The payload is kept in REPO_DIR/../push.json.
# Prints the HTTP status and the agent's answer; exit 0 on a 2xx answer.

set -u

[ $# -ge 4 ] || {
	echo "usage: send-push.sh URL SECRET_FILE REPOSITORY REPO_DIR [BRANCH [COMMIT]]" >&2
	exit 2
}
url=$1
secret_file=$2
repository=$3
repo=$(cd "$4" 2>/dev/null && pwd) || { echo "send-push: no directory $4" >&2; exit 1; }
branch=${5:-main}
sha=$(git -C "$repo" rev-parse --verify "${6:-$branch}^{commit}" 2>/dev/null) ||
	{ echo "send-push: $repo has no commit ${6:-$branch}" >&2; exit 1; }
secret=$(cat "$secret_file") || exit 1
# JSON strings: the message is escaped by python3, the rest are names.
message=$(git -C "$repo" log -1 --format=%s "$sha" |
	python3 -c 'import json, sys; print(json.dumps(sys.stdin.read().strip()))')
payload=$(dirname "$repo")/push.json
cat >"$payload" <<EOF
{
  "ref": "refs/heads/$branch",
  "before": "0000000000000000000000000000000000000000",
  "after": "$sha",
  "created": true,
  "deleted": false,
  "forced": false,
  "base_ref": null,
  "compare": "https://github.com/$repository/commit/$sha",
  "commits": [],
  "head_commit": {"id": "$sha", "message": $message},
  "repository": {
    "id": 1,
    "name": "${repository#*/}",
    "full_name": "$repository",
    "private": false,
    "default_branch": "main",
    "clone_url": "https://github.com/$repository.git"
  },
  "pusher": {"name": "sluice", "email": "sluice@localhost"},
  "sender": {"login": "sluice", "id": 1, "type": "User"}
}
EOF
signature=$(openssl dgst -sha256 -hmac "$secret" "$payload" | sed 's/^.*= *//')
answer=$(curl -s -w '\n%{http_code}' -X POST "$url" \
	-H "User-Agent: GitHub-Hookshot/local" \
	-H "Content-Type: application/json" \
	-H "X-GitHub-Event: push" \
	-H "X-GitHub-Delivery: $(cat /proc/sys/kernel/random/uuid)" \
	-H "X-GitHub-Hook-ID: 1" \
	-H "X-Hub-Signature-256: sha256=$signature" \
	--data-binary "@$payload")
code=$(printf '%s\n' "$answer" | tail -n 1)
printf '%s %s\n' "$code" "$(printf '%s\n' "$answer" | sed '$d')"
case $code in 2??) exit 0 ;; *) exit 1 ;; esac
