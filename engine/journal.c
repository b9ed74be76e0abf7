/*
 * journal.c — the index of per-process journals and dead processes
 * (journal.h) over the event log.
 */
#include "journal.h"
#include "json.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct jtxn {
	uint64_t txn, proc_id; /* the process (journal_proc.id) that began it */
	uint64_t last_ns;
};

struct journal {
	pthread_mutex_t lock; /* leaf */
	struct journal_proc *procs;
	size_t nprocs, capprocs;
	struct jtxn *txns;
	size_t ntxns, captxns;
	uint64_t next_id;
};

int journal_open(struct journal **out)
{
	struct journal *j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	pthread_mutex_init(&j->lock, NULL);
	j->next_id = 1;
	*out = j;
	return 0;
}

void journal_close(struct journal *j)
{
	if (!j)
		return;
	pthread_mutex_destroy(&j->lock);
	free(j->procs);
	free(j->txns);
	free(j);
}

/* An exact unsigned integer field: raw digits in an event being written
 * (ev_add_u64), a number once parsed back. */
static bool get_u64(const cJSON *o, const char *name, uint64_t *v)
{
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);
	if (cJSON_IsRaw(f) && f->valuestring && f->valuestring[0] >= '0' &&
	    f->valuestring[0] <= '9') {
		char *end;
		errno = 0;
		*v = strtoull(f->valuestring, &end, 10);
		return !*end && errno == 0;
	}
	if (!cJSON_IsNumber(f) || f->valuedouble < 0 || f->valuedouble >= 0x1p64)
		return false;
	*v = (uint64_t)f->valuedouble;
	return true;
}

/* The process (pid, start) as an index entry (lock held); NULL: no memory. */
static struct journal_proc *proc_of(struct journal *j, uint32_t pid, uint64_t start,
				    uint64_t time_ns)
{
	for (size_t k = 0; k < j->nprocs; k++)
		if (j->procs[k].pid == pid && j->procs[k].start == start)
			return &j->procs[k];
	if (j->nprocs == j->capprocs) {
		size_t cap = j->capprocs ? 2 * j->capprocs : 64;
		struct journal_proc *n = realloc(j->procs, cap * sizeof(*n));
		if (!n)
			return NULL;
		j->procs = n;
		j->capprocs = cap;
	}
	struct journal_proc *p = &j->procs[j->nprocs++];
	memset(p, 0, sizeof(*p));
	p->id = j->next_id++;
	p->pid = pid;
	p->start = start;
	p->first_ns = p->last_ns = time_ns;
	return p;
}

static struct jtxn *txn_of(struct journal *j, uint64_t txn)
{
	for (size_t k = j->ntxns; k-- > 0;) /* recent ones last */
		if (j->txns[k].txn == txn)
			return &j->txns[k];
	return NULL;
}

static struct journal_proc *proc_by_id(struct journal *j, uint64_t id)
{
	for (size_t k = 0; k < j->nprocs; k++)
		if (j->procs[k].id == id)
			return &j->procs[k];
	return NULL;
}

static void touch(struct journal_proc *p, uint64_t time_ns)
{
	if (time_ns > p->last_ns)
		p->last_ns = time_ns;
	if (time_ns < p->first_ns)
		p->first_ns = time_ns;
}

/* Lock held. */
static void note_locked(struct journal *j, uint64_t time_ns, const cJSON *ev)
{
	const cJSON *type = cJSON_GetObjectItemCaseSensitive(ev, "type");
	uint64_t pid, start, txn;
	struct journal_proc *p;

	if (get_u64(ev, "pid", &pid) && get_u64(ev, "start", &start) && pid <= UINT32_MAX &&
	    (p = proc_of(j, (uint32_t)pid, start, time_ns))) {
		touch(p, time_ns);
		if (cJSON_IsString(type) && strcmp(type->valuestring, "dead_process") == 0)
			p->dead_ns = time_ns;
		if (cJSON_IsString(type) && strcmp(type->valuestring, "txn_begin") == 0 &&
		    get_u64(ev, "txn", &txn) && !txn_of(j, txn)) {
			if (j->ntxns == j->captxns) {
				size_t cap = j->captxns ? 2 * j->captxns : 64;
				struct jtxn *n = realloc(j->txns, cap * sizeof(*n));
				if (!n)
					return;
				j->txns = n;
				j->captxns = cap;
			}
			j->txns[j->ntxns++] = (struct jtxn){txn, p->id, time_ns};
		}
	}
	if (get_u64(ev, "by_pid", &pid) && get_u64(ev, "by_start", &start) && pid <= UINT32_MAX &&
	    pid != 0 && (p = proc_of(j, (uint32_t)pid, start, time_ns)))
		touch(p, time_ns);
	struct jtxn *t;
	if (cJSON_IsString(type) && strncmp(type->valuestring, "txn_", 4) == 0 &&
	    get_u64(ev, "txn", &txn) && (t = txn_of(j, txn)) && (p = proc_by_id(j, t->proc_id))) {
		touch(p, time_ns);
		if (time_ns > t->last_ns)
			t->last_ns = time_ns;
	}
}

void journal_note(struct journal *j, uint64_t time_ns, const cJSON *ev)
{
	if (!j || !ev)
		return;
	pthread_mutex_lock(&j->lock);
	note_locked(j, time_ns, ev);
	pthread_mutex_unlock(&j->lock);
}

/* "2026-12-07T05:04:30.123Z" (ev_rfc3339) to ns; 0 when it is not one. */
static uint64_t parse_time(const cJSON *o)
{
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "time");
	struct tm tm;
	unsigned ms = 0;
	memset(&tm, 0, sizeof(tm));
	if (!cJSON_IsString(t) ||
	    sscanf(t->valuestring, "%d-%d-%dT%d:%d:%d.%uZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
		   &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7)
		return 0;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	time_t s = timegm(&tm);
	return s < 0 ? 0 : (uint64_t)s * 1000000000ull + (uint64_t)ms * 1000000ull;
}

/* Calls fn for each JSON line of an ev_render text (parsed). */
static void each_line(const char *txt, size_t len, void (*fn)(void *arg, const char *line,
							      size_t n, const cJSON *o),
		      void *arg)
{
	for (const char *line = txt, *nl; line < txt + len; line = nl + 1) {
		nl = memchr(line, '\n', (size_t)(txt + len - line));
		if (!nl)
			nl = txt + len;
		cJSON *o = json_parse(line, (size_t)(nl - line));
		if (o)
			fn(arg, line, (size_t)(nl - line), o);
		cJSON_Delete(o);
	}
}

static void note_line(void *arg, const char *line, size_t n, const cJSON *o)
{
	(void)line;
	(void)n;
	note_locked(arg, parse_time(o), o);
}

void journal_note_text(struct journal *j, const char *txt, size_t len)
{
	pthread_mutex_lock(&j->lock);
	each_line(txt, len, note_line, j);
	pthread_mutex_unlock(&j->lock);
}

void journal_prune(struct journal *j, uint64_t oldest_ns)
{
	pthread_mutex_lock(&j->lock);
	size_t w = 0;
	for (size_t k = 0; k < j->nprocs; k++)
		if (j->procs[k].last_ns >= oldest_ns)
			j->procs[w++] = j->procs[k];
	j->nprocs = w;
	w = 0;
	for (size_t k = 0; k < j->ntxns; k++)
		if (j->txns[k].last_ns >= oldest_ns && proc_by_id(j, j->txns[k].proc_id))
			j->txns[w++] = j->txns[k];
	j->ntxns = w;
	pthread_mutex_unlock(&j->lock);
}

static bool listed(const struct journal_proc *p, uint64_t oldest_ns, bool dead)
{
	return dead ? p->dead_ns && p->dead_ns >= oldest_ns : p->last_ns >= oldest_ns;
}

/* Is p the newest listed process of its pid ("PID")? Lock held. */
static bool is_newest(struct journal *j, const struct journal_proc *p, uint64_t oldest_ns,
		      bool dead)
{
	for (size_t k = 0; k < j->nprocs; k++) {
		const struct journal_proc *q = &j->procs[k];
		if (q == p || q->pid != p->pid || !listed(q, oldest_ns, dead))
			continue;
		uint64_t tq = dead ? q->dead_ns : q->last_ns, tp = dead ? p->dead_ns : p->last_ns;
		if (tq > tp || (tq == tp && q->id > p->id))
			return false;
	}
	return true;
}

static int cmp_proc(const void *a, const void *b)
{
	const struct journal_proc *x = *(const struct journal_proc *const *)a,
				  *y = *(const struct journal_proc *const *)b;
	if (x->pid != y->pid)
		return x->pid < y->pid ? -1 : 1;
	return x->start < y->start ? -1 : x->start > y->start;
}

int journal_list(struct journal *j, uint64_t oldest_ns, bool dead,
		 int (*fn)(void *arg, const struct journal_proc *p, const char *name), void *arg)
{
	pthread_mutex_lock(&j->lock);
	const struct journal_proc **v = malloc((j->nprocs + 1) * sizeof(*v));
	size_t n = 0;
	int ret = v ? 0 : -ENOMEM;
	for (size_t k = 0; v && k < j->nprocs; k++)
		if (listed(&j->procs[k], oldest_ns, dead))
			v[n++] = &j->procs[k];
	if (v)
		qsort(v, n, sizeof(*v), cmp_proc);
	for (size_t k = 0; k < n && !ret; k++) {
		struct journal_proc p = *v[k];
		char name[48];
		p.newest = is_newest(j, v[k], oldest_ns, dead);
		if (p.newest)
			snprintf(name, sizeof(name), "%" PRIu32, p.pid);
		else
			snprintf(name, sizeof(name), "%" PRIu32 ".%" PRIu64, p.pid, p.start);
		ret = fn(arg, &p, name);
	}
	free(v);
	pthread_mutex_unlock(&j->lock);
	return ret;
}

int journal_find(struct journal *j, const char *name, uint64_t oldest_ns, bool dead,
		 struct journal_proc *out)
{
	/* only the names journal_list gives: canonical decimals (util.h) */
	const char *dot = strchr(name, '.');
	uint64_t pid, start = 0;
	bool exact = dot != NULL;
	size_t plen = exact ? (size_t)(dot - name) : strlen(name);
	if (!dec_parse(name, plen, &pid) || pid > UINT32_MAX ||
	    (exact && !dec_parse(dot + 1, strlen(dot + 1), &start)))
		return -ENOENT;
	int err = -ENOENT;
	pthread_mutex_lock(&j->lock);
	for (size_t k = 0; k < j->nprocs && err; k++) {
		struct journal_proc *p = &j->procs[k];
		if (p->pid != pid || !listed(p, oldest_ns, dead) || (exact && p->start != start))
			continue;
		bool newest = is_newest(j, p, oldest_ns, dead);
		if (exact || newest) {
			*out = *p;
			out->newest = newest;
			err = 0;
		}
	}
	pthread_mutex_unlock(&j->lock);
	return err;
}

int journal_get(struct journal *j, uint64_t id, struct journal_proc *out)
{
	pthread_mutex_lock(&j->lock);
	struct journal_proc *p = proc_by_id(j, id);
	if (p)
		*out = *p;
	pthread_mutex_unlock(&j->lock);
	return p ? 0 : -ENOENT;
}

struct collect {
	struct journal *j;
	const struct journal_proc *p;
	bool dead_only;
	char *out;
	size_t len, cap;
	const char *dead_line; /* the newest dead_process line */
	size_t dead_len;
	int err;
};

static bool same_proc(const cJSON *o, const char *pid_f, const char *start_f,
		      const struct journal_proc *p)
{
	uint64_t pid, start;
	return get_u64(o, pid_f, &pid) && get_u64(o, start_f, &start) && pid == p->pid &&
	       start == p->start;
}

/* Does the line belong to p (journal.h; lock held)? */
static bool belongs(struct journal *j, const cJSON *o, const struct journal_proc *p)
{
	if (same_proc(o, "pid", "start", p) || same_proc(o, "by_pid", "by_start", p))
		return true;
	const cJSON *type = cJSON_GetObjectItemCaseSensitive(o, "type");
	uint64_t txn;
	struct jtxn *t;
	return cJSON_IsString(type) && strncmp(type->valuestring, "txn_", 4) == 0 &&
	       get_u64(o, "txn", &txn) && (t = txn_of(j, txn)) && t->proc_id == p->id;
}

static void collect_line(void *arg, const char *line, size_t n, const cJSON *o)
{
	struct collect *c = arg;
	if (c->err)
		return;
	if (c->dead_only) {
		const cJSON *type = cJSON_GetObjectItemCaseSensitive(o, "type");
		if (cJSON_IsString(type) && strcmp(type->valuestring, "dead_process") == 0 &&
		    same_proc(o, "pid", "start", c->p)) {
			c->dead_line = line;
			c->dead_len = n;
		}
		return;
	}
	if (!belongs(c->j, o, c->p))
		return;
	if (c->len + n + 2 > c->cap) {
		size_t cap = 2 * c->cap + n + 2;
		char *g = realloc(c->out, cap);
		if (!g) {
			c->err = -ENOMEM;
			return;
		}
		c->out = g;
		c->cap = cap;
	}
	memcpy(c->out + c->len, line, n);
	c->len += n;
	c->out[c->len++] = '\n';
	c->out[c->len] = 0;
}

int journal_render(struct journal *j, const struct journal_proc *p, const char *txt,
		   size_t len, char **out, size_t *outlen)
{
	struct collect c = {.j = j, .p = p};
	pthread_mutex_lock(&j->lock);
	each_line(txt, len, collect_line, &c);
	pthread_mutex_unlock(&j->lock);
	if (!c.err && !c.out && !(c.out = calloc(1, 1)))
		c.err = -ENOMEM;
	if (c.err) {
		free(c.out);
		return c.err;
	}
	*out = c.out;
	*outlen = c.len;
	return 0;
}

int journal_render_dead(const struct journal_proc *p, const char *txt, size_t len,
			char **out, size_t *outlen)
{
	struct collect c = {.p = p, .dead_only = true};
	each_line(txt, len, collect_line, &c);
	if (!c.dead_line)
		return -ENOENT;
	cJSON *o = json_parse(c.dead_line, c.dead_len);
	char *s = o ? json_print(o, true) : NULL;
	cJSON_Delete(o);
	if (!s)
		return -ENOMEM;
	size_t n = strlen(s);
	char *r = realloc(s, n + 2);
	if (!r) {
		free(s);
		return -ENOMEM;
	}
	r[n] = '\n';
	r[n + 1] = 0;
	*out = r;
	*outlen = n + 1;
	return 0;
}
