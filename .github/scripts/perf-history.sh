#!/usr/bin/env bash
# Add a results folder to the benchmark history and publish the trend page (perf.yml, main only).
#
#   .github/scripts/perf-history.sh RESULTS_DIR [PAGE_DIR]
#
# Where the history lives:
#   PERF_HISTORY_URL set (a postgresql:// URL, or an SQLite path): that database.
#   Otherwise the SQLite file `history.sqlite` on the `perf-data` branch of the remote `origin`
#   (PERF_DATA_BRANCH, PERF_REMOTE override): fetched, added to, committed on top of the fetched
#   commit (or as the first commit of a new branch) and pushed back. A push rejected because
#   another job pushed first is settled by fetching again and re-adding on top (adding a folder
#   twice stores it once), up to PERF_PUSH_ATTEMPTS (default 3) times. The branch's history is
#   never rewritten (no force push); a remote that cannot be read is an error, never taken for a
#   missing branch.
# Then the trend page goes to PAGE_DIR (default reports/history) and its "changes since" table
# (summary.md) is appended to $GITHUB_STEP_SUMMARY when that is set.
#
# SAMPLEMIND_BENCH: the samplemind-bench to run (default: the one on PATH).
# PERF_SINCE: the commit of the "changes since" table (default: the 10th first-parent ancestor
# of HEAD, when there is one).
# Exit status: 0 done; 1 the push kept being rejected or git failed; 2 bad input (from
# `samplemind-bench history`, e.g. a corrupt results folder: nothing is pushed).
set -euo pipefail

usage() { echo "usage: $0 RESULTS_DIR [PAGE_DIR]" >&2; exit 2; }
[ $# -ge 1 ] && [ $# -le 2 ] || usage
results=$1
page=${2:-reports/history}
bench=${SAMPLEMIND_BENCH:-samplemind-bench}
remote=${PERF_REMOTE:-origin}
branch=${PERF_DATA_BRANCH:-perf-data}
attempts=${PERF_PUSH_ATTEMPTS:-3}
sha=${GITHUB_SHA:-$(git rev-parse HEAD)}
since=${PERF_SINCE:-$(git rev-parse --quiet --verify 'HEAD~10^{commit}' || true)}

say() { echo "perf-history: $*"; }
die() { echo "perf-history: error: $*" >&2; exit "${2:-1}"; }

report() {  # report DB
    local args=(history report --db "$1" --out "$page")
    [ -z "$since" ] || args+=(--since "$since")
    "$bench" "${args[@]}"
    if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
        { cat "$page/summary.md"; echo; } >>"$GITHUB_STEP_SUMMARY"
    fi
}

if [ -n "${PERF_HISTORY_URL:-}" ]; then
    "$bench" history add "$results" --db "$PERF_HISTORY_URL"
    report "$PERF_HISTORY_URL"
    exit 0
fi

work=$(mktemp -d "${RUNNER_TEMP:-${TMPDIR:-/tmp}}/perf-history.XXXXXX")
trap 'rm -rf "$work"' EXIT
db=$work/history.sqlite
ref=refs/perf-history/fetched   # a private ref: the fetched tip, never a local branch

for ((attempt = 1; ; attempt++)); do
    rm -f "$db" "$db-wal" "$db-shm"
    # exit 2 from ls-remote --exit-code: the branch does not exist (yet); anything else failing
    # (network, permissions) must not be taken for that, or a new branch would replace it
    set +e
    git ls-remote --exit-code "$remote" "refs/heads/$branch" >/dev/null
    listed=$?
    set -e
    parent=()
    case $listed in
        0)
            git fetch --quiet --no-tags "$remote" "+refs/heads/$branch:$ref"
            parent=(-p "$(git rev-parse "$ref")")
            if git cat-file -e "$ref:history.sqlite" 2>/dev/null; then
                git cat-file blob "$ref:history.sqlite" >"$db"
            fi
            ;;
        2) say "no $branch branch on $remote yet: starting it" ;;
        *) die "cannot read $remote (git ls-remote exited $listed)" ;;
    esac
    "$bench" history add "$results" --db "$db"   # exit 2 on bad input: nothing pushed
    # the store closes its connections, so the WAL is checkpointed into the file
    [ ! -s "$db-wal" ] || die "$db-wal left behind: the SQLite file is incomplete"
    # the new tree: the fetched one (other files on the branch stay) with history.sqlite replaced
    blob=$(git hash-object -w "$db")
    export GIT_INDEX_FILE=$work/index
    rm -f "$GIT_INDEX_FILE"
    if [ ${#parent[@]} -gt 0 ]; then git read-tree "$ref"; else git read-tree --empty; fi
    git update-index --add --cacheinfo "100644,$blob,history.sqlite"
    tree=$(git write-tree)
    unset GIT_INDEX_FILE
    if [ ${#parent[@]} -gt 0 ] && [ "$(git rev-parse "$ref^{tree}")" = "$tree" ]; then
        say "$results already in the history: nothing to push"
        break
    fi
    commit=$(
        GIT_AUTHOR_NAME=${GIT_AUTHOR_NAME:-perf-bot} \
        GIT_AUTHOR_EMAIL=${GIT_AUTHOR_EMAIL:-perf-bot@users.noreply.github.com} \
        GIT_COMMITTER_NAME=${GIT_COMMITTER_NAME:-perf-bot} \
        GIT_COMMITTER_EMAIL=${GIT_COMMITTER_EMAIL:-perf-bot@users.noreply.github.com} \
        git commit-tree "$tree" "${parent[@]}" -m "history: $sha"
    )
    if git push --quiet "$remote" "$commit:refs/heads/$branch"; then
        say "pushed $commit to $remote $branch (attempt $attempt)"
        break
    fi
    [ "$attempt" -lt "$attempts" ] || die "push to $remote $branch rejected $attempt times"
    say "push rejected (another job pushed first?): fetching again (attempt $attempt of $attempts)"
done

report "$db"
