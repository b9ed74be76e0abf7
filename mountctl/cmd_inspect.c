/*
 * cmd_inspect.c — `mountctl inspect STORE [WHAT] [--json]`: what an
 * unmounted store holds, read-only (engine/fsck.h reads it; nothing is
 * written, the LOCK is taken shared for the read).
 *
 *   summary (default)  format, size, commits, log position, checkpoints,
 *                      packs, live files and bytes
 *   commits [--since ID] [--path P]
 *                      the commits log (clog.h): id, time, txn, pid, paths
 *   txn                transaction events (txn_begin, txn_commit, ...)
 *   leases             lease events (lease_grant, lease_renew, ...)
 *   proposals          proposal_opened, vote and decision events
 *   events             the whole event log (events.h)
 *   file PATH [--history]
 *                      the live file: inode, mode, size, chunks, and with
 *                      --history every version of it still in the log
 *                      (commit, time, size, checksum) and the commits
 *                      that named it
 * Human tables by default, --json for scripts. A mounted store is refused
 * (exit 1) naming the server's pid: read it through the mount instead.
 * Exit: 0, 1 failed (not a store, mounted, no such path), 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <xxhash.h>

#include <cjson/cJSON.h>

#include "fsck.h"
#include "json.h"
#include "mountctl.h"
#include "ns.h"
#include "rec.h"
#include "txdir.h"

#define CLOG_MAGIC 0x32474c43u /* "CLG2" (clog.h) */

struct iargs {
	bool json, history;
	const char *store, *what, *path;
	uint64_t since;
	const char *filter; /* --path */
};

static void rfc3339(uint64_t ns, char *buf, size_t cap)
{
	time_t s = (time_t)(ns / 1000000000u);
	struct tm tm;
	gmtime_r(&s, &tm);
	strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* With milliseconds, as the mount's commits/ID and events write times. */
static void rfc3339_ms(uint64_t ns, char *buf, size_t cap)
{
	time_t s = (time_t)(ns / 1000000000u);
	struct tm tm;
	char sec[32];

	gmtime_r(&s, &tm);
	strftime(sec, sizeof(sec), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, cap, "%s.%03uZ", sec, (unsigned)(ns / 1000000u % 1000u));
}

/* Text output: a name or path escaped for one line (mc_esc_line); the
 * --json output carries them raw (JSON-escaped). */
static void put_esc(const char *s)
{
	char *e = mc_esc_line(s ? s : "");
	fputs(e, stdout);
	free(e);
}

static void print_json(cJSON *j)
{
	char *t = json_print(j, true);
	printf("%s\n", t);
	free(t);
	cJSON_Delete(j);
}

/* ---- summary ------------------------------------------------------------- */
static void use_name(uint32_t file, char *buf, size_t n)
{
	if (file & 0x80000000u) /* chunk.h CHUNK_FILE_WAL */
		snprintf(buf, n, "seg-%08u", file & ~0x80000000u);
	else
		snprintf(buf, n, "pack-%06u", file);
}

/* Garbage in packs and WAL segments: what each holds that no live file
 * uses, and what GC would free (gc.h G2). */
static void show_garbage(const struct fsck_result *r)
{
	printf("garbage      %" PRIu64 " bytes GC would free\n", r->gc_would_free);
	for (uint32_t k = 0; k < r->nuses; k++) {
		const struct fsck_use *u = &r->uses[k];
		char name[32];
		if (u->size <= u->live)
			continue;
		use_name(u->file, name, sizeof(name));
		printf("  %-12s %12" PRIu64 " bytes, %12" PRIu64 " live, %12" PRIu64 " dead%s\n",
		       name, u->size, u->live, u->size - u->live, u->gc ? "  (GC takes it)" : "");
	}
}

static int show_summary(const struct iargs *a, const struct fsck_result *r)
{
	if (a->json) {
		cJSON *j = cJSON_CreateObject();
		cJSON_AddStringToObject(j, "store", a->store);
		cJSON_AddNumberToObject(j, "format", r->format);
		cJSON_AddNumberToObject(j, "store_bytes", (double)r->store_bytes);
		cJSON_AddNumberToObject(j, "commits", (double)r->commits);
		cJSON_AddNumberToObject(j, "records", (double)r->records);
		cJSON_AddNumberToObject(j, "first_lsn", (double)r->first_lsn);
		cJSON_AddNumberToObject(j, "last_lsn", (double)r->last_lsn);
		cJSON_AddNumberToObject(j, "segments", r->segments);
		cJSON_AddNumberToObject(j, "wal_bytes", (double)r->wal_bytes);
		cJSON_AddNumberToObject(j, "checkpoints", r->checkpoints);
		cJSON_AddNumberToObject(j, "checkpoint_lsn", (double)r->ckpt_lsn);
		cJSON_AddNumberToObject(j, "packs", r->packs);
		cJSON_AddNumberToObject(j, "pack_bytes", (double)r->pack_bytes);
		cJSON_AddNumberToObject(j, "pack_garbage_bytes",
					(double)(r->pack_bytes - r->pack_live_bytes));
		cJSON_AddNumberToObject(j, "gc_would_free_bytes", (double)r->gc_would_free);
		cJSON *g = cJSON_AddArrayToObject(j, "garbage");
		for (uint32_t k = 0; g && k < r->nuses; k++) {
			const struct fsck_use *u = &r->uses[k];
			if (u->size <= u->live)
				continue;
			cJSON *e = cJSON_CreateObject();
			char name[32];
			use_name(u->file, name, sizeof(name));
			cJSON_AddStringToObject(e, "file", name);
			cJSON_AddNumberToObject(e, "size", (double)u->size);
			cJSON_AddNumberToObject(e, "live", (double)u->live);
			cJSON_AddNumberToObject(e, "dead", (double)(u->size - u->live));
			cJSON_AddBoolToObject(e, "gc", u->gc);
			cJSON_AddItemToArray(g, e);
		}
		cJSON_AddNumberToObject(j, "files", (double)r->files);
		cJSON_AddNumberToObject(j, "directories", (double)r->dirs);
		cJSON_AddNumberToObject(j, "live_bytes", (double)r->live_bytes);
		cJSON_AddNumberToObject(j, "problems", r->errors);
		print_json(j);
		return 0;
	}
	printf("store        ");
	put_esc(a->store);
	printf("\n");
	printf("format       %u\n", r->format);
	printf("size         %" PRIu64 " bytes\n", r->store_bytes);
	printf("commits      %" PRIu64 " in the log (%" PRIu64 " records)\n", r->commits,
	       r->records);
	printf("log          lsn %" PRIu64 "..%" PRIu64 ", %u segments, %" PRIu64 " bytes\n",
	       r->first_lsn, r->last_lsn, r->segments, r->wal_bytes);
	printf("checkpoints  %u, newest valid at lsn %" PRIu64 "\n", r->checkpoints, r->ckpt_lsn);
	printf("packs        %u, %" PRIu64 " bytes, %" PRIu64 " of them no longer live\n",
	       r->packs, r->pack_bytes, r->pack_bytes - r->pack_live_bytes);
	printf("live         %" PRIu64 " files, %" PRIu64 " directories, %" PRIu64 " bytes\n",
	       r->files, r->dirs, r->live_bytes);
	show_garbage(r);
	if (r->errors) {
		printf("problems     %u (run mountctl fsck ", r->errors);
		put_esc(a->store);
		printf(")\n");
	}
	return 0;
}

/* ---- commits (clog.h) ------------------------------------------------------ */
static uint64_t g64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static uint32_t g32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static uint16_t g16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return v;
}

static const char *kind_name(uint8_t k)
{
	switch (k) {
	case 'C': return "created";
	case 'M': return "modified";
	case 'D': return "removed";
	case 'R': return "renamed";
	case 'L': return "linked";
	default: return "?";
	}
}

/* Whether path is p or under p. */
static bool path_matches(const char *path, size_t len, const char *p)
{
	size_t pl = strlen(p);
	while (pl > 1 && p[pl - 1] == '/')
		pl--;
	if (len < pl || memcmp(path, p, pl) != 0)
		return false;
	return len == pl || path[pl] == '/' || (pl == 1 && p[0] == '/');
}

/* One decoded record of the log into j (NULL when the filter drops it). */
static cJSON *clog_record(const struct iargs *a, const uint8_t *b, uint32_t blen)
{
	uint64_t id = g64(b), t = g64(b + 8), txn = g64(b + 16);
	uint32_t pid = g32(b + 24), n = g32(b + 28), at = 32;
	if (id < a->since)
		return NULL;
	cJSON *j = cJSON_CreateObject(), *paths = cJSON_CreateArray();
	char ts[40];
	rfc3339_ms(t, ts, sizeof(ts));
	cJSON_AddNumberToObject(j, "id", (double)id);
	cJSON_AddStringToObject(j, "time", ts);
	cJSON_AddNumberToObject(j, "txn", (double)txn);
	cJSON_AddNumberToObject(j, "pid", pid);
	bool hit = !a->filter;
	for (uint32_t k = 0; k < n && at + 13 <= blen; k++) {
		uint8_t kind = b[at];
		uint64_t csum = g64(b + at + 1);
		uint16_t pl = g16(b + at + 9);
		if (at + 11 + pl + 2 > blen)
			break;
		const char *path = (const char *)b + at + 11;
		uint16_t fl = g16(b + at + 11 + pl);
		if (at + 13 + pl + fl > blen)
			break;
		const char *from = (const char *)b + at + 13 + pl;
		at += 13 + pl + fl;
		cJSON *e = cJSON_CreateObject();
		char *ps = strndup(path, pl), *fs = strndup(from, fl);
		cJSON_AddStringToObject(e, "op", kind_name(kind));
		cJSON_AddStringToObject(e, "path", ps ? ps : "");
		if (fl)
			cJSON_AddStringToObject(e, "from", fs ? fs : "");
		if (csum) {
			char h[40];
			snprintf(h, sizeof(h), "xxh64:%016" PRIx64, csum);
			cJSON_AddStringToObject(e, "checksum", h);
		}
		if (a->filter && (path_matches(path, pl, a->filter) ||
				  (fl && path_matches(from, fl, a->filter))))
			hit = true;
		free(ps);
		free(fs);
		cJSON_AddItemToArray(paths, e);
	}
	cJSON_AddItemToObject(j, "changes", paths);
	cJSON_AddNumberToObject(j, "changes_total", n);
	if (!hit) {
		cJSON_Delete(j);
		return NULL;
	}
	return j;
}

/* The commits log as a JSON array (a torn tail ends it, clog.h C3). */
static cJSON *read_clog(const struct iargs *a)
{
	char *path = mc_join(a->store, "coordination/commits/log"), *buf = NULL;
	cJSON *arr = cJSON_CreateArray();
	FILE *f = fopen(path, "rb");
	free(path);
	if (!f)
		return arr;
	size_t cap = 0, len = 0;
	uint8_t tmp[65536];
	for (size_t n; (n = fread(tmp, 1, sizeof(tmp), f)) > 0;) {
		if (len + n > cap) {
			cap = (len + n) * 2;
			char *nb = realloc(buf, cap);
			if (!nb)
				break;
			buf = nb;
		}
		memcpy(buf + len, tmp, n);
		len += n;
	}
	fclose(f);
	const uint8_t *p = (const uint8_t *)buf;
	for (size_t at = 0; p && at + 16 + 32 <= len;) {
		uint32_t blen = g32(p + at + 4);
		if (g32(p + at) != CLOG_MAGIC || blen < 32 || at + 16 + blen > len ||
		    XXH64(p + at + 16, blen, 0) != g64(p + at + 8))
			break;
		cJSON *r = clog_record(a, p + at + 16, blen);
		if (r)
			cJSON_AddItemToArray(arr, r);
		at += 16 + blen;
	}
	free(buf);
	return arr;
}

static void print_commits(cJSON *arr)
{
	printf("%-8s %-20s %-6s %-8s %s\n", "ID", "TIME", "TXN", "PID", "CHANGES");
	cJSON *c;
	cJSON_ArrayForEach(c, arr)
	{
		cJSON *p, *paths = cJSON_GetObjectItem(c, "changes");
		char *time = mc_esc_line(cJSON_GetObjectItem(c, "time")->valuestring);
		printf("%-8.0f %-20s %-6.0f %-8.0f", cJSON_GetObjectItem(c, "id")->valuedouble, time,
		       cJSON_GetObjectItem(c, "txn")->valuedouble,
		       cJSON_GetObjectItem(c, "pid")->valuedouble);
		free(time);
		const char *sep = " ";
		cJSON_ArrayForEach(p, paths)
		{
			cJSON *from = cJSON_GetObjectItem(p, "from");
			printf("%s", sep);
			put_esc(cJSON_GetObjectItem(p, "op")->valuestring);
			printf(" ");
			if (cJSON_IsString(from)) {
				put_esc(from->valuestring);
				printf(" -> ");
			}
			put_esc(cJSON_GetObjectItem(p, "path")->valuestring);
			sep = ", ";
		}
		printf("\n");
	}
}

/* ---- events (events.h: "<time_ns> <json>" lines) ---------------------------- */
static bool type_wanted(const char *what, const char *type)
{
	if (!strcmp(what, "events"))
		return true;
	if (!strcmp(what, "leases"))
		return !strncmp(type, "lease_", 6) || !strcmp(type, "dead_process");
	if (!strcmp(what, "txn"))
		return !strncmp(type, "txn_", 4);
	return !strcmp(type, "proposal_opened") || !strcmp(type, "vote") ||
	       !strcmp(type, "decision");
}

static int show_events(const struct iargs *a)
{
	char *path = mc_join(a->store, "coordination/events.log");
	FILE *f = fopen(path, "r");
	free(path);
	cJSON *arr = cJSON_CreateArray();
	char *line = NULL;
	size_t cap = 0;
	while (f && getline(&line, &cap, f) > 0) {
		char *sp = strchr(line, ' ');
		if (!sp)
			continue;
		cJSON *e = json_parse_str(sp + 1);
		cJSON *t = e ? cJSON_GetObjectItem(e, "type") : NULL;
		if (!cJSON_IsString(t) || !type_wanted(a->what, t->valuestring)) {
			cJSON_Delete(e); /* E4: a torn line is skipped */
			continue;
		}
		cJSON_AddItemToArray(arr, e);
	}
	free(line);
	if (f)
		fclose(f);
	if (a->json) {
		cJSON *j = cJSON_CreateObject();
		cJSON_AddItemToObject(j, a->what, arr);
		print_json(j);
		return 0;
	}
	printf("%-20s %-16s %s\n", "TIME", "TYPE", "DETAILS");
	cJSON *e;
	cJSON_ArrayForEach(e, arr)
	{
		cJSON *t = cJSON_DetachItemFromObject(e, "time");
		cJSON *ty = cJSON_DetachItemFromObject(e, "type");
		char *rest = json_print(e, false), *safe = mc_json_tty(rest);
		char *time = mc_esc_line(cJSON_IsString(t) ? t->valuestring : "?");
		char *type = mc_esc_line(ty->valuestring);
		printf("%-20s %-16s %s\n", time, type, safe);
		free(rest);
		free(safe);
		free(time);
		free(type);
		cJSON_Delete(t);
		cJSON_Delete(ty);
	}
	cJSON_Delete(arr);
	return 0;
}

/* ---- file PATH ----------------------------------------------------------------- */
/* A content change of some inode in the log: one committed version. */
struct ver {
	uint64_t lsn, time_ns, ino, size;
};

struct vers {
	struct ver *v;
	size_t n, cap;
};

/* fsck_opts.record: every content change still in the log (rec.h). */
static int note_versions(void *arg, const struct fsck_rec *r)
{
	struct vers *vs = arg;
	struct rec_hdr hdr;
	if (r->type != WAL_REC_COMMIT || rec_validate(r->payload, r->len, &hdr))
		return 0;
	struct rec_iter it;
	struct rec_opv op;
	rec_iter_init(&it, r->payload, &hdr);
	while (rec_next(&it, &op) == 1) {
		if (op.op != OP_CONTENT)
			continue;
		if (vs->n == vs->cap) {
			size_t cap = vs->cap ? 2 * vs->cap : 64;
			struct ver *n = realloc(vs->v, cap * sizeof(*n));
			if (!n)
				return -ENOMEM;
			vs->v = n;
			vs->cap = cap;
		}
		vs->v[vs->n++] = (struct ver){r->lsn, hdr.time_ns, op.u.content.ino,
					      op.u.content.size};
	}
	return 0;
}

/* A name the file had, over commits lo..hi. */
static bool named(cJSON *names, const char *path, double id)
{
	cJSON *n;
	cJSON_ArrayForEach(n, names)
	{
		if (!strcmp(cJSON_GetObjectItem(n, "name")->valuestring, path) &&
		    cJSON_GetObjectItem(n, "lo")->valuedouble <= id &&
		    id <= cJSON_GetObjectItem(n, "hi")->valuedouble)
			return true;
	}
	return false;
}

static cJSON *name_span(const char *name, double lo, double hi)
{
	cJSON *n = cJSON_CreateObject();
	cJSON_AddStringToObject(n, "name", name);
	cJSON_AddNumberToObject(n, "lo", lo);
	cJSON_AddNumberToObject(n, "hi", hi);
	return n;
}

/* The names a file had and over which commits, from the commits log read
 * newest first: a rename to a name it has starts that name's span and
 * adds the old name up to the rename; its creation, or a removal of an
 * earlier file of the same name, starts the span. */
static cJSON *file_names(cJSON *clog, const char *path)
{
	cJSON *names = cJSON_CreateArray(), *c, *p, *n;
	cJSON_AddItemToArray(names, name_span(path, 0, 1e300));
	for (c = clog->child ? clog->child->prev : NULL; c; c = c == clog->child ? NULL : c->prev) {
		double id = cJSON_GetObjectItem(c, "id")->valuedouble;
		cJSON_ArrayForEach(p, cJSON_GetObjectItem(c, "changes"))
		{
			const char *kind = cJSON_GetObjectItem(p, "op")->valuestring;
			const char *to = cJSON_GetObjectItem(p, "path")->valuestring;
			cJSON *from = cJSON_GetObjectItem(p, "from");
			cJSON_ArrayForEach(n, names)
			{
				cJSON *lo = cJSON_GetObjectItem(n, "lo");
				if (strcmp(cJSON_GetObjectItem(n, "name")->valuestring, to) ||
				    lo->valuedouble != 0 || id > cJSON_GetObjectItem(n, "hi")->valuedouble)
					continue;
				if (!strcmp(kind, "renamed") && cJSON_IsString(from)) {
					cJSON_SetNumberValue(lo, id);
					cJSON_AddItemToArray(names, name_span(from->valuestring, 0, id));
				} else if (!strcmp(kind, "created") || !strcmp(kind, "linked")) {
					cJSON_SetNumberValue(lo, id);
				} else if (!strcmp(kind, "removed")) {
					cJSON_SetNumberValue(lo, id + 1);
				}
				break;
			}
		}
	}
	return names;
}

/* The commits of clog naming one of names (copies). */
static cJSON *file_history(cJSON *clog, cJSON *names)
{
	cJSON *out = cJSON_CreateArray(), *c, *p;
	cJSON_ArrayForEach(c, clog)
	{
		bool hit = false;
		cJSON_ArrayForEach(p, cJSON_GetObjectItem(c, "changes"))
		{
			cJSON *from = cJSON_GetObjectItem(p, "from");
			double id = cJSON_GetObjectItem(c, "id")->valuedouble;
			hit |= named(names, cJSON_GetObjectItem(p, "path")->valuestring, id) ||
			       (cJSON_IsString(from) && named(names, from->valuestring, id));
		}
		if (hit)
			cJSON_AddItemToArray(out, cJSON_Duplicate(c, true));
	}
	return out;
}

/* The checksum the commits log gives the file (one of names) at commit
 * id, or NULL. */
static const char *clog_checksum(cJSON *clog, cJSON *names, uint64_t id)
{
	cJSON *c, *p;
	cJSON_ArrayForEach(c, clog)
	{
		if ((uint64_t)cJSON_GetObjectItem(c, "id")->valuedouble != id)
			continue;
		cJSON_ArrayForEach(p, cJSON_GetObjectItem(c, "changes"))
		{
			cJSON *sum = cJSON_GetObjectItem(p, "checksum");
			if (cJSON_IsString(sum) &&
			    named(names, cJSON_GetObjectItem(p, "path")->valuestring, (double)id))
				return sum->valuestring;
		}
	}
	return NULL;
}

/* Every version of inode ino still in the log, oldest first. */
static cJSON *versions_json(const struct vers *vs, uint64_t ino, cJSON *clog, cJSON *names)
{
	cJSON *arr = cJSON_CreateArray();
	for (size_t k = 0; k < vs->n; k++) {
		if (vs->v[k].ino != ino)
			continue;
		cJSON *e = cJSON_CreateObject();
		char ts[40];
		rfc3339(vs->v[k].time_ns, ts, sizeof(ts));
		cJSON_AddNumberToObject(e, "commit", (double)vs->v[k].lsn);
		cJSON_AddStringToObject(e, "time", ts);
		cJSON_AddNumberToObject(e, "size", (double)vs->v[k].size);
		const char *sum = clog_checksum(clog, names, vs->v[k].lsn);
		if (sum)
			cJSON_AddStringToObject(e, "checksum", sum);
		cJSON_AddItemToArray(arr, e);
	}
	return arr;
}

static struct inode *lookup(struct ns *ns, const char *path)
{
	struct inode *in = ns_inode(ns, NS_ROOT_INO);
	char *dup = mc_strdup(path), *save = NULL;
	for (char *part = strtok_r(dup, "/", &save); in && part; part = strtok_r(NULL, "/", &save)) {
		struct dent *d = in->dir ? ns_dir_find(in->dir, part, strlen(part)) : NULL;
		in = d && d->ino ? ns_inode(ns, d->ino) : NULL;
	}
	free(dup);
	return in;
}

static int count_chunk(void *arg, uint64_t idx, struct chunk *c)
{
	(void)idx;
	(void)c;
	(*(uint64_t *)arg)++;
	return 0;
}

static int show_file(const struct iargs *a, struct fsck_result *r, const struct vers *vs)
{
	struct inode *in = lookup(&r->ns, a->path);
	struct iver *v = in ? in->head : NULL;
	if (!v) {
		char *ep = mc_esc_line(a->path), *es = mc_esc_line(a->store);
		mc_err("inspect", "%s: no such file in %s", ep, es);
		free(ep);
		free(es);
		return MC_EXIT_FAIL;
	}
	uint64_t chunks = 0;
	if (S_ISREG(v->mode))
		cmap_walk(v->map, 0, count_chunk, &chunks);
	char digest[40], mt[40];
	snprintf(digest, sizeof(digest), "xxh64:%016" PRIx64, digest_final(v->dsum, v->size));
	rfc3339((uint64_t)v->mtime.tv_sec * 1000000000u, mt, sizeof(mt));
	cJSON *j = cJSON_CreateObject();
	cJSON_AddStringToObject(j, "path", a->path);
	cJSON_AddNumberToObject(j, "inode", (double)in->ino);
	cJSON_AddStringToObject(j, "type", S_ISREG(v->mode) ? "file" : S_ISDIR(v->mode) ? "directory"
					  : S_ISLNK(v->mode) ? "symlink" : "other");
	cJSON_AddNumberToObject(j, "mode", v->mode & 07777);
	cJSON_AddNumberToObject(j, "uid", v->uid);
	cJSON_AddNumberToObject(j, "gid", v->gid);
	cJSON_AddNumberToObject(j, "nlink", v->nlink);
	cJSON_AddNumberToObject(j, "size", (double)v->size);
	cJSON_AddStringToObject(j, "mtime", mt);
	cJSON_AddNumberToObject(j, "commit", (double)v->commit);
	if (S_ISREG(v->mode)) {
		cJSON_AddNumberToObject(j, "chunks", (double)chunks);
		cJSON_AddNumberToObject(j, "stored_bytes", (double)v->stored);
		cJSON_AddStringToObject(j, "checksum", digest);
	}
	cJSON *hist = NULL, *versions = NULL;
	if (a->history) {
		struct iargs h = *a;
		h.filter = NULL;
		h.since = 0;
		cJSON *clog = read_clog(&h), *names = file_names(clog, a->path);
		hist = file_history(clog, names);
		versions = versions_json(vs, in->ino, clog, names);
		cJSON_Delete(names);
		cJSON_Delete(clog);
		cJSON_AddItemToObject(j, "versions", versions);
		cJSON_AddItemToObject(j, "history", hist);
	}
	if (a->json) {
		print_json(j);
		return 0;
	}
	printf("path     ");
	put_esc(a->path);
	printf("\ninode    %" PRIu64 "\ntype     %s\nmode     %04o\nowner    %u:%u\n"
	       "size     %" PRIu64 "\nmtime    %s\ncommit   %" PRIu64 "\n",
	       in->ino, cJSON_GetObjectItem(j, "type")->valuestring, v->mode & 07777,
	       v->uid, v->gid, v->size, mt, v->commit);
	if (S_ISREG(v->mode))
		printf("chunks   %" PRIu64 " (%" PRIu64 " bytes stored)\nchecksum %s\n", chunks,
		       v->stored, digest);
	if (versions) {
		cJSON *v;
		printf("\nversions still in the log:\n%-8s %-20s %-12s %s\n", "COMMIT", "TIME",
		       "SIZE", "CHECKSUM");
		cJSON_ArrayForEach(v, versions)
		{
			cJSON *sum = cJSON_GetObjectItem(v, "checksum");
			char *esum = mc_esc_line(cJSON_IsString(sum) ? sum->valuestring : "-");
			printf("%-8.0f %-20s %-12.0f %s\n", cJSON_GetObjectItem(v, "commit")->valuedouble,
			       cJSON_GetObjectItem(v, "time")->valuestring,
			       cJSON_GetObjectItem(v, "size")->valuedouble, esum);
			free(esum);
		}
	}
	if (hist) {
		printf("\nhistory (commits log):\n");
		print_commits(hist);
	}
	cJSON_Delete(j);
	return 0;
}

/* ---- the command ------------------------------------------------------------- */
static int parse(const struct mc_cmd *cmd, int argc, char **argv, struct iargs *a)
{
	static const struct option opts[] = {
		{"json", no_argument, NULL, 'j'},
		{"history", no_argument, NULL, 'H'},
		{"since", required_argument, NULL, 's'},
		{"path", required_argument, NULL, 'p'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	memset(a, 0, sizeof(*a));
	a->what = "summary";
	optind = 1;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		long v;
		switch (c) {
		case 'j':
			a->json = true;
			break;
		case 'H':
			a->history = true;
			break;
		case 's':
			if (!mc_parse_long(optarg, 0, __LONG_MAX__, &v))
				return mc_usage(cmd, "--since wants a commit id");
			a->since = (uint64_t)v;
			break;
		case 'p':
			a->filter = optarg;
			break;
		case 'h':
			mc_help(cmd);
			return MC_EXIT_OK;
		default:
			return mc_usage(cmd, "unknown option");
		}
	}
	if (optind >= argc)
		return mc_usage(cmd, "missing STORE");
	a->store = argv[optind++];
	if (optind < argc)
		a->what = argv[optind++];
	static const char *whats[] = {"summary", "commits", "txn", "leases", "proposals",
				      "events", "file"};
	bool known = false;
	for (size_t k = 0; k < sizeof(whats) / sizeof(whats[0]); k++)
		known |= !strcmp(a->what, whats[k]);
	if (!known)
		return mc_usage(cmd, "unknown WHAT");
	if (!strcmp(a->what, "file")) {
		if (optind >= argc)
			return mc_usage(cmd, "file wants a PATH");
		a->path = argv[optind++];
	}
	if (optind < argc)
		return mc_usage(cmd, "too many arguments");
	if ((a->since || a->filter) && strcmp(a->what, "commits"))
		return mc_usage(cmd, "--since and --path go with commits");
	if (a->history && strcmp(a->what, "file"))
		return mc_usage(cmd, "--history goes with file PATH");
	return -1;
}

int cmd_inspect(const struct mc_cmd *cmd, int argc, char **argv)
{
	struct iargs a;
	int rc = parse(cmd, argc, argv, &a);
	if (rc >= 0)
		return rc;
	struct vers vs = {0};
	struct fsck_opts fo = {.keep_ns = !strcmp(a.what, "file"), .skip_chunks = true};
	if (a.history) {
		fo.record = note_versions;
		fo.arg = &vs;
	}
	struct fsck_result r;
	int err = fsck_run(a.store, &fo, &r);
	if (err) {
		char *mnt = err == -TXD_ELOCKED ? mc_store_mount_point(a.store) : NULL;
		if (err == -TXD_ELOCKED)
			mc_err(cmd->name, "%s is mounted (txdirfs pid %ld)%s%s: inspect reads only an "
			       "unmounted store; read %s/.txdir/ instead", a.store, (long)r.holder,
			       mnt ? " at " : "", mnt ? mnt : "", mnt ? mnt : "the mount's");
		else if (err == -TXD_EFORMAT) {
			char why[160];
			mc_err(cmd->name, "%s: %s", a.store, txd_format_problem(a.store, why, sizeof(why)));
		} else
			mc_err(cmd->name, "%s: %s", a.store, txd_strerror(err));
		free(mnt);
		free(vs.v);
		fsck_result_free(&r);
		return MC_EXIT_FAIL;
	}
	if (!strcmp(a.what, "summary")) {
		rc = show_summary(&a, &r);
	} else if (!strcmp(a.what, "commits")) {
		cJSON *arr = read_clog(&a);
		if (a.json) {
			cJSON *j = cJSON_CreateObject();
			cJSON_AddItemToObject(j, "commits", arr);
			print_json(j);
		} else {
			print_commits(arr);
			cJSON_Delete(arr);
		}
		rc = 0;
	} else if (!strcmp(a.what, "file")) {
		rc = show_file(&a, &r, &vs);
	} else {
		rc = show_events(&a);
	}
	free(vs.v);
	fsck_result_free(&r);
	return rc;
}
