/*
 * ctl_lease.c — `.txdir/leases/` over the lease service (ctl_lease.h).
 *
 * Node keys: a PID directory's key is the pid; a lease's (and its files')
 * key is its grant's token: one node per grant, so a re-grab of NAME by the
 * same PID is a new inode to the kernel (rmdir marked the old one dead, and
 * lookups in a dead directory are ENOENT while anything still pins it; a
 * revalidation of active/PID/NAME after a break sees another node). The
 * adapter interns each lease name in a table (name_id; names are never
 * forgotten while the store is open: a few bytes per distinct name), which
 * also maps the latest token seen of each name back to it: a token that is
 * no longer its name's latest has ended (grants of a name are sequential,
 * tokens increase), and its nodes answer ENOENT. by-name/NAME's key and a
 * waiting entry's are name_id << PID_BITS | pid (by-name: the holder's pid;
 * the kernel caches a symlink's target, so another holder's link must be
 * another node); completed/TOKEN's is the token.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ctl.h"
#include "ctl_lease.h"
#include "ctl_wait.h"
#include "events.h"
#include "core.h"
#include "dtree.h"
#include "json.h"
#include "svc.h"
#include "os.h"
#include "util.h"

#define PID_BITS 22
#define PID_MASK ((1ull << PID_BITS) - 1)
#define NAME_IDS (1u << 29) /* keys stay below 2^52 (ctl.c's inode numbers) */

enum {
	L_ROOT = CTL_LEASE_FIRST, /* .txdir/leases */
	L_ACTIVE,
	L_BYNAME,
	L_CLEANUP,
	L_COMPLETED,
	L_WAITING,
	L_APID,     /* active/PID */
	L_LEASE,    /* active/PID/NAME */
	L_ACQUIRED, /* its files, in readdir order */
	L_EXPIRES,
	L_INFO,
	L_OWNER,
	L_TOKEN,
	L_TTL,
	L_RELEASED, /* active/PID/NAME/released */
	L_LINK,     /* by-name/NAME */
	L_DONE,     /* completed/TOKEN */
	L_WPID,     /* waiting/PID */
	L_WAIT,     /* waiting/PID/NAME */
	L_GRANTED,  /* waiting/PID/NAME/granted */
	L_CQ,       /* cleanup_queue/PID (svc.h V10) */
	L_END
};

struct lent {
	const char *name;
	unsigned kind;
};

static const struct lent root_ents[] = {
	{"active", L_ACTIVE},       {"by-name", L_BYNAME}, {"cleanup_queue", L_CLEANUP},
	{"completed", L_COMPLETED}, {"waiting", L_WAITING},
};
static const struct lent lease_ents[] = {
	{"acquired", L_ACQUIRED}, {"expires", L_EXPIRES}, {"info.json", L_INFO},
	{"owner", L_OWNER},       {"released", L_RELEASED}, {"token", L_TOKEN},
	{"ttl", L_TTL},
};
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* ---- interned names (fs->lock) ---------------------------------------------- */
struct iname {
	struct iname *next;
	struct iname *tnext;  /* in tbucket[] by token, when token != 0 */
	uint32_t id;
	uint64_t token;       /* the latest grant of this name seen, 0 none */
	char name[];
};

/* An open wait file: `released` (the grant current at open ends) or
 * `granted` (pid is granted name). Lives from open to release; wlock. */
struct lwait {
	struct lwait *next, *prev;
	bool granted;
	char name[LEASE_NAME_MAX + 1];
	uint64_t token;         /* released: the grant current at open */
	uint32_t pid;           /* granted: the waiter */
	uint64_t key;           /* granted: the waiting entry's (name id, pid) */
	bool ready;
	uint64_t result;        /* granted: the token */
	enum lease_end how;     /* released: how it ended (0: unknown) */
	struct ctl_waiter cw;    /* its reader's deferred read and poll */
	uint64_t opened_ns;     /* monotonic: txdir_lease_wait_seconds */
};

struct ctl_leases {
	struct iname *bucket[1024];
	struct iname *tbucket[1024]; /* by token: the names' latest grants */
	struct iname **by_id;
	uint32_t n, cap;
	struct txd_fs *fs;
	pthread_mutex_t wlock;  /* the waits (a leaf: taken under fs->lock or alone) */
	struct lwait waits;     /* list head */
	/* waiting entries whose `granted` was read: gone (wait_entry) while
	 * that grant lasts; dropped at its release (wlock) */
	struct gone {
		uint64_t key, token;
	} *gone;
	uint32_t ngone, capgone;
};

static void on_lease_event(void *arg, const struct lease_event *ev);

static struct ctl_leases *state(struct txd_fs *fs)
{
	if (!fs->ctl_leases && (fs->ctl_leases = calloc(1, sizeof(*fs->ctl_leases)))) {
		struct ctl_leases *cl = fs->ctl_leases;
		fs->upper_free = ctl_upper_free; /* ctl.h: every adapter's */
		cl->fs = fs;
		pthread_mutex_init(&cl->wlock, NULL);
		cl->waits.next = cl->waits.prev = &cl->waits;
		svc_set_listener(fs->svc, on_lease_event, cl);
	}
	return fs->ctl_leases;
}

static uint32_t name_hash(const char *s)
{
	uint32_t h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	return h & 1023;
}

/* The id of name, interned on first use; 0 when out of memory or ids. */
static uint32_t intern(struct txd_fs *fs, const char *name)
{
	struct ctl_leases *cl = state(fs);
	if (!cl)
		return 0;
	uint32_t h = name_hash(name);
	for (struct iname *e = cl->bucket[h]; e; e = e->next)
		if (strcmp(e->name, name) == 0)
			return e->id;
	size_t len = strlen(name);
	if (cl->n + 1 >= NAME_IDS ||
	    array_grow((void **)&cl->by_id, &cl->cap, cl->n + 2, sizeof(*cl->by_id)))
		return 0;
	struct iname *e = calloc(1, sizeof(*e) + len + 1);
	if (!e)
		return 0;
	memcpy(e->name, name, len + 1);
	e->id = ++cl->n; /* ids start at 1 */
	e->next = cl->bucket[h];
	cl->bucket[h] = e;
	cl->by_id[e->id] = e;
	return e->id;
}

static const char *name_of(struct txd_fs *fs, uint64_t key)
{
	struct ctl_leases *cl = fs->ctl_leases;
	uint64_t id = key >> PID_BITS;
	return cl && id >= 1 && id <= cl->n ? cl->by_id[id]->name : NULL;
}

static uint64_t lkey(uint32_t id, uint32_t pid)
{
	return (uint64_t)id << PID_BITS | pid;
}

static unsigned token_hash(uint64_t token)
{
	return (unsigned)((token * 0x9e3779b97f4a7c15ull) >> 54);
}

/* The key of a grant's nodes (its token), its name's latest token from now
 * on unless a later one was seen; 0 when out of memory or ids. */
static uint64_t grant_key(struct txd_fs *fs, const char *name, uint64_t token)
{
	uint32_t id = token ? intern(fs, name) : 0;
	if (!id)
		return 0;
	struct ctl_leases *cl = fs->ctl_leases;
	struct iname *e = cl->by_id[id];
	if (token <= e->token)
		return token; /* already seen (or ended: then its nodes say ENOENT) */
	if (e->token) {
		struct iname **pp = &cl->tbucket[token_hash(e->token)];
		while (*pp != e)
			pp = &(*pp)->tnext;
		*pp = e->tnext;
	}
	e->token = token;
	e->tnext = cl->tbucket[token_hash(token)];
	cl->tbucket[token_hash(token)] = e;
	return token;
}

/* The name of the grant whose token is key, if it is its name's latest
 * token seen; NULL for an ended one. */
static const char *grant_name(struct txd_fs *fs, uint64_t key)
{
	struct ctl_leases *cl = fs->ctl_leases;
	if (!cl || !key)
		return NULL;
	for (struct iname *e = cl->tbucket[token_hash(key)]; e; e = e->tnext)
		if (e->token == key)
			return e->name;
	return NULL;
}

void ctl_lease_free(struct txd_fs *fs)
{
	struct ctl_leases *cl = fs->ctl_leases;
	if (!cl)
		return;
	for (uint32_t k = 1; k <= cl->n; k++)
		free(cl->by_id[k]);
	free(cl->by_id);
	free(cl->gone);
	pthread_mutex_destroy(&cl->wlock);
	free(cl);
	fs->ctl_leases = NULL;
}

/* ---- kinds ------------------------------------------------------------------- */
bool ctl_lease_owns(unsigned kind)
{
	return kind >= CTL_LEASE_FIRST && kind < L_END;
}

bool ctl_lease_is_dir(unsigned kind)
{
	return kind <= L_LEASE || kind == L_WPID || kind == L_WAIT;
}

bool ctl_lease_cacheable(unsigned kind)
{
	/* the fixed directories, and active/PID/ and waiting/PID/: a PID's
	 * directory stays cached at most a second after its process dies
	 * (readdir of active/ is exact at once, and a grab in it is ENOENT,
	 * as when the lookup itself failed: grab) */
	return (kind >= L_ROOT && kind <= L_WAITING) || kind == L_APID || kind == L_WPID;
}

unsigned ctl_lease_root_kind(void)
{
	return L_ROOT;
}

bool ctl_lease_is_wait(unsigned kind)
{
	return kind == L_RELEASED || kind == L_GRANTED;
}

bool ctl_lease_writable(unsigned kind)
{
	return kind == L_TTL;
}

static struct lease_svc *lsvc(struct txd_fs *fs)
{
	return svc_lease(fs->svc);
}

static struct proc *lproc(struct txd_fs *fs)
{
	return svc_proc(fs->svc);
}

/* ---- the service, called with fs->lock released ------------------------------
 * fs->ctl_via belongs to the call in progress (ctl.c): kept across. */
struct unlocked {
	struct txd_fs *fs;
	uint64_t via;
};

static struct unlocked drop(struct txd_fs *fs)
{
	struct unlocked u = {fs, fs->ctl_via};
	pthread_mutex_unlock(&fs->lock);
	return u;
}

static void retake(struct unlocked u)
{
	pthread_mutex_lock(&u.fs->lock);
	u.fs->ctl_via = u.via;
}

/* The current grant of name (fs->lock held, released meanwhile). */
static int current(struct txd_fs *fs, const char *name, struct lease_info *li)
{
	struct unlocked u = drop(fs);
	int err = lease_get(lsvc(fs), name, li);
	retake(u);
	return err;
}

/* The grant of name if pid holds it. */
static int held_by(struct txd_fs *fs, const char *name, uint32_t pid, struct lease_info *li)
{
	int err = current(fs, name, li);
	return !err && li->holder.pid != pid ? -ENOENT : err;
}

struct infos {
	struct lease_info *v;
	uint32_t n, cap;
	int err;
};

static int collect(void *arg, const struct lease_info *li)
{
	struct infos *in = arg;
	if (array_grow((void **)&in->v, &in->cap, in->n + 1, sizeof(*in->v)))
		return in->err = -ENOMEM;
	in->v[in->n++] = *li;
	return 0;
}

/* Every current grant (fs->lock held, released meanwhile). */
static int all_leases(struct txd_fs *fs, struct infos *in)
{
	memset(in, 0, sizeof(*in));
	struct unlocked u = drop(fs);
	lease_list(lsvc(fs), collect, in);
	retake(u);
	return in->err;
}

struct dones {
	struct lease_completed *v;
	uint32_t n, cap;
	int err;
};

static int collect_done(void *arg, const struct lease_completed *c)
{
	struct dones *d = arg;
	if (array_grow((void **)&d->v, &d->cap, d->n + 1, sizeof(*d->v)))
		return d->err = -ENOMEM;
	d->v[d->n++] = *c;
	return 0;
}

static int all_done(struct txd_fs *fs, struct dones *d)
{
	memset(d, 0, sizeof(*d));
	struct unlocked u = drop(fs);
	lease_list_completed(lsvc(fs), collect_done, d);
	retake(u);
	return d->err;
}

/* Where pid stands on name, in one look (lease_standing: a grant between
 * two looks, or one still being made durable, is not missed): 0 and the
 * grant in *li when pid holds name, 1 when it waits (li zeroed), -ENOENT.
 * fs->lock held, released meanwhile. */
static int standing(struct txd_fs *fs, const char *name, uint32_t pid, struct lease_info *li)
{
	struct unlocked u = drop(fs);
	int r = lease_standing(lsvc(fs), name, pid, li);
	retake(u);
	if (r)
		memset(li, 0, sizeof(*li));
	return r;
}

/* The process making the request (P1: its Tgid), or the server (engine
 * calls with no caller: root). */
static int who(struct txd_fs *fs, const struct txd_cred *c, struct lease_who *by)
{
	memset(by, 0, sizeof(*by));
	if (!c)
		return 0;
	by->uid = c->uid;
	return c->pid > 0 ? proc_identify(lproc(fs), (uint32_t)c->pid, &by->proc) : 0;
}

/* A PID path component: digits only, no leading zero, 1..PID_MASK. */
static bool parse_pid(const char *s, uint32_t *pid)
{
	uint64_t v = 0;
	if (!*s || *s == '0')
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || (v = v * 10 + (uint64_t)(*s - '0')) > PID_MASK)
			return false;
	}
	*pid = (uint32_t)v;
	return true;
}

/* ---- cleanup_queue/PID (svc.h V10) ---------------------------------------------- */
struct cq_scan {
	uint32_t pid;
	char **out;         /* NULL: only whether it is there */
	bool found;
};

static int cq_one(void *arg, const struct svc_cleanup *c)
{
	struct cq_scan *q = arg;
	char when[40];
	if (c->id.pid != q->pid)
		return 0;
	q->found = true;
	if (q->out) {
		ev_rfc3339(c->detected_ns, when, sizeof(when));
		if (asprintf(q->out,
			     "{\"pid\":%" PRIu32 ",\"start\":%" PRIu64 ",\"detected\":\"%s\","
			     "\"leases\":%s}\n",
			     c->id.pid, c->id.start, when, c->leases_json) < 0)
			*q->out = NULL;
	}
	return 1;
}

/* The reclaim of pid in progress: 0 (its JSON, malloc'd, in *out when out
 * is not NULL), -ENOENT, -ENOMEM. */
static int cq_find(struct txd_fs *fs, uint32_t pid, char **out)
{
	struct cq_scan q = {pid, out, false};
	(void)svc_cleanup_list(fs->svc, cq_one, &q);
	return !q.found ? -ENOENT : out && !*out ? -ENOMEM : 0;
}

/* ---- lookup ------------------------------------------------------------------ */
static int lookup_table(struct txd_fs *fs, const struct lent *t, size_t n, const char *name,
			uint64_t key, struct txd_entry *e)
{
	for (size_t k = 0; k < n; k++)
		if (strcmp(name, t[k].name) == 0)
			return ctl_entry(fs, t[k].kind, key, e);
	return -ENOENT;
}

static int node_lease(struct txd_fs *fs, const struct node *n, struct lease_info *li);
static int wait_entry(struct txd_fs *fs, uint64_t key, struct lease_info *li);

int ctl_lease_lookup(struct txd_fs *fs, struct node *parent, const char *name,
		     struct txd_entry *e)
{
	struct lease_info li;
	uint32_t pid, id;
	uint64_t token;

	switch (parent->ctl) {
	case L_ROOT:
		return lookup_table(fs, root_ents, NELEM(root_ents), name, 0, e);
	case L_ACTIVE:
	case L_WAITING:
		if (!parse_pid(name, &pid))
			return -ENOENT;
		return ctl_entry(fs, parent->ctl == L_ACTIVE ? L_APID : L_WPID, pid, e);
	case L_APID:
		if (lease_name_check(name) || held_by(fs, name, (uint32_t)parent->ctl_key, &li))
			return -ENOENT;
		if (!(token = grant_key(fs, name, li.token)))
			return -ENOMEM;
		return ctl_entry(fs, L_LEASE, token, e); /* one node per grant */
	case L_LEASE:
		/* its files' getattr answers after the grant ends (for fstat of
		 * an open released): existence is decided here */
		if (node_lease(fs, parent, &li))
			return -ENOENT;
		return lookup_table(fs, lease_ents, NELEM(lease_ents), name, parent->ctl_key, e);
	case L_BYNAME:
		if (lease_name_check(name) || current(fs, name, &li))
			return -ENOENT;
		if (!(id = intern(fs, name)))
			return -ENOMEM;
		/* one node per holder: the kernel caches a symlink's target */
		return ctl_entry(fs, L_LINK, lkey(id, li.holder.pid), e);
	case L_COMPLETED:
		if (!dec_parse(name, strlen(name), &token) || !token)
			return -ENOENT; /* only the name readdir lists (util.h) */
		return ctl_entry(fs, L_DONE, token, e);
	case L_WPID:
		if (lease_name_check(name))
			return -ENOENT;
		if (!(id = intern(fs, name)))
			return -ENOMEM;
		return ctl_entry(fs, L_WAIT, lkey(id, (uint32_t)parent->ctl_key), e);
	case L_WAIT:
		if (strcmp(name, "granted") || wait_entry(fs, parent->ctl_key, &li))
			return -ENOENT;
		return ctl_entry(fs, L_GRANTED, parent->ctl_key, e);
	case L_CLEANUP:
		if (!parse_pid(name, &pid) || cq_find(fs, pid, NULL))
			return -ENOENT;
		return ctl_entry(fs, L_CQ, pid, e);
	default:
		return -ENOTDIR;
	}
}

/* ---- attributes -------------------------------------------------------------- */
static bool pid_live(struct txd_fs *fs, uint32_t pid, uint32_t *uid)
{
	uint32_t ppid;
	return proc_owner(lproc(fs), pid, uid, &ppid) == 0;
}

static int find_done(struct txd_fs *fs, uint64_t token, struct lease_completed *out)
{
	struct dones d;
	int err = all_done(fs, &d);
	for (uint32_t k = 0; !err && k < d.n; k++)
		if (d.v[k].lease.token == token) {
			*out = d.v[k];
			free(d.v);
			return 0;
		}
	free(d.v);
	return err ? err : -ENOENT;
}

/* Is the waiting entry key's grant token one whose `granted` was read? */
static bool entry_gone(struct ctl_leases *cl, uint64_t key, uint64_t token)
{
	bool gone = false;
	pthread_mutex_lock(&cl->wlock);
	for (uint32_t k = 0; k < cl->ngone && !gone; k++)
		gone = cl->gone[k].key == key && cl->gone[k].token == token;
	pthread_mutex_unlock(&cl->wlock);
	return gone;
}

/* A waiting entry exists while its PID waits for NAME, and once granted
 * until its `granted` has been read in full (SPEC §5 "the waiting entry then
 * goes away"); unread, it stays while PID holds NAME, so a reader that opens
 * `granted` after the grant still learns the token (as active/PID/NAME/token
 * always tells it). */
static int wait_entry(struct txd_fs *fs, uint64_t key, struct lease_info *li)
{
	const char *name = name_of(fs, key);
	uint32_t pid = (uint32_t)(key & PID_MASK);
	if (!name)
		return -ENOENT;
	char copy[LEASE_NAME_MAX + 1];
	snprintf(copy, sizeof(copy), "%s", name);
	struct ctl_leases *cl = state(fs);
	int r = standing(fs, copy, pid, li);
	if (r == 0)
		return cl && entry_gone(cl, key, li->token) ? -ENOENT : 0;
	return r > 0 ? 0 : r;
}

/* The grant whose token is key (a lease node's or its files'), if it is
 * still current; -ENOENT once it ended. */
static int grant_of(struct txd_fs *fs, uint64_t key, struct lease_info *li)
{
	const char *name = grant_name(fs, key);
	if (!name)
		return -ENOENT;
	char copy[LEASE_NAME_MAX + 1];
	snprintf(copy, sizeof(copy), "%s", name);
	int err = current(fs, copy, li);
	return !err && li->token != key ? -ENOENT : err;
}

/* The grant a lease node (or one of its files) stands for. */
static int node_lease(struct txd_fs *fs, const struct node *n, struct lease_info *li)
{
	return grant_of(fs, n->ctl_key, li);
}

static int link_target(struct txd_fs *fs, const struct node *n, char *buf, size_t cap)
{
	const char *name = name_of(fs, n->ctl_key);
	struct lease_info li;
	if (!name)
		return -ENOENT;
	char copy[LEASE_NAME_MAX + 1];
	snprintf(copy, sizeof(copy), "%s", name);
	if (current(fs, copy, &li) || li.holder.pid != (n->ctl_key & PID_MASK))
		return -ENOENT; /* another holder's link is another node */
	return snprintf(buf, cap, "../active/%" PRIu32 "/%s", li.holder.pid, copy);
}

/* The uid of the lease a by-name link stands for (0 if gone meanwhile). */
static uint32_t li_uid_of_link(struct txd_fs *fs, const struct node *n)
{
	struct lease_info li;
	const char *name = name_of(fs, n->ctl_key);
	char copy[LEASE_NAME_MAX + 1];
	if (!name)
		return 0;
	snprintf(copy, sizeof(copy), "%s", name);
	return current(fs, copy, &li) ? 0 : li.uid;
}

int ctl_lease_getattr(struct txd_fs *fs, struct node *n, struct txd_attr *a)
{
	struct lease_info li;
	struct lease_completed c;
	char target[LEASE_NAME_MAX + 64];
	uint32_t uid = 0;
	int err = 0;

	a->nlink = 1;
	switch (n->ctl) {
	case L_APID:
	case L_WPID:
		if (!pid_live(fs, (uint32_t)n->ctl_key, &uid))
			return -ENOENT;
		a->mode = S_IFDIR | 01777;
		a->uid = uid;
		break;
	case L_LEASE:
		if ((err = node_lease(fs, n, &li)))
			return err;
		a->mode = S_IFDIR | 0777;
		a->uid = li.uid;
		break;
	case L_WAIT:
		if ((err = wait_entry(fs, n->ctl_key, &li)))
			return err;
		a->mode = S_IFDIR | 0755;
		pid_live(fs, (uint32_t)(n->ctl_key & PID_MASK), &a->uid);
		break;
	case L_GRANTED:
		/* no check: an open `granted` stays fstat-able after its wait
		 * ends, as an unlinked file does (lookup checks existence) */
		a->mode = S_IFREG | 0444;
		break;
	case L_LINK:
		if ((err = link_target(fs, n, target, sizeof(target))) < 0)
			return err;
		a->mode = S_IFLNK | 0777;
		a->size = (uint64_t)err;
		a->uid = (uint32_t)(li_uid_of_link(fs, n));
		return 0;
	case L_DONE:
		if ((err = find_done(fs, n->ctl_key, &c)))
			return err;
		a->mode = S_IFREG | 0444;
		a->uid = c.lease.uid;
		return 0;
	case L_CQ:
		/* fstat-able after the entry went (lookup decides existence) */
		a->mode = S_IFREG | 0444;
		return 0;
	case L_BYNAME:
		a->mode = S_IFDIR | 01777; /* unlink breaks: the kernel leaves it to us */
		break;
	default:
		if (ctl_lease_is_dir(n->ctl)) {
			a->mode = S_IFDIR | 0555;
			break;
		}
		/* a lease's file: after the grant ended its open handles (a
		 * `released` being read) still fstat, as an unlinked file on
		 * ext4; lookup decides existence (ctl_lease_lookup) */
		a->mode = n->ctl == L_TTL ? S_IFREG | 0666 : S_IFREG | 0444;
		a->uid = node_lease(fs, n, &li) ? 0 : li.uid;
		return 0;
	}
	if (S_ISDIR(a->mode)) {
		a->nlink = 2;
		a->size = 4096;
	}
	return 0;
}

ssize_t ctl_lease_readlink(struct txd_fs *fs, struct node *n, char *buf, size_t size)
{
	char target[LEASE_NAME_MAX + 64];
	if (n->ctl != L_LINK)
		return -EINVAL;
	int len = link_target(fs, n, target, sizeof(target));
	if (len < 0)
		return len;
	memcpy(buf, target, (size_t)len < size ? (size_t)len : size);
	return len;
}

/* ---- readdir ----------------------------------------------------------------- */
struct ldent {
	char name[LEASE_NAME_MAX + 1];
	unsigned kind;
	uint64_t key;
};

struct ldents {
	struct ldent *v;
	uint32_t n, cap;
};

static void dents_add(struct ldents *d, const char *name, unsigned kind, uint64_t key)
{
	if (array_grow((void **)&d->v, &d->cap, d->n + 1, sizeof(*d->v)))
		return;
	snprintf(d->v[d->n].name, sizeof(d->v[d->n].name), "%s", name);
	d->v[d->n].kind = kind;
	d->v[d->n].key = key;
	d->n++;
}

static bool dents_has(const struct ldents *d, const char *name)
{
	for (uint32_t k = 0; k < d->n; k++)
		if (strcmp(d->v[k].name, name) == 0)
			return true;
	return false;
}

struct wscan {
	struct txd_fs *fs;
	const char *name;
	uint32_t pid; /* 0: every waiter's pid */
	struct ldents *d;
};

static int scan_waiter(void *arg, const struct proc_id *w)
{
	struct wscan *s = arg;
	char buf[16];
	if (s->pid == 0) {
		snprintf(buf, sizeof(buf), "%" PRIu32, w->pid);
		if (!dents_has(s->d, buf))
			dents_add(s->d, buf, L_WPID, w->pid);
	} else if (w->pid == s->pid && !dents_has(s->d, s->name)) {
		dents_add(s->d, s->name, L_WAIT, 0); /* key set by the caller */
	}
	return 0;
}

static int cq_dent(void *arg, const struct svc_cleanup *c)
{
	char buf[16];
	snprintf(buf, sizeof(buf), "%" PRIu32, c->id.pid);
	if (!dents_has(arg, buf))
		dents_add(arg, buf, L_CQ, c->id.pid);
	return 0;
}

/* The children of n, in a stable order (fs->lock held, released meanwhile). */
static int list_children(struct txd_fs *fs, struct node *n, struct ldents *d)
{
	struct infos in;
	struct dones dn;
	char buf[24];
	int err;

	switch (n->ctl) {
	case L_ROOT:
		for (size_t k = 0; k < NELEM(root_ents); k++)
			dents_add(d, root_ents[k].name, root_ents[k].kind, 0);
		return 0;
	case L_LEASE:
		for (size_t k = 0; k < NELEM(lease_ents); k++)
			dents_add(d, lease_ents[k].name, lease_ents[k].kind, n->ctl_key);
		return 0;
	case L_WAIT:
		dents_add(d, "granted", L_GRANTED, n->ctl_key);
		return 0;
	case L_COMPLETED:
		if ((err = all_done(fs, &dn)))
			return err;
		for (uint32_t k = 0; k < dn.n; k++) {
			snprintf(buf, sizeof(buf), "%" PRIu64, dn.v[k].lease.token);
			dents_add(d, buf, L_DONE, dn.v[k].lease.token);
		}
		free(dn.v);
		return 0;
	case L_CLEANUP:
		return svc_cleanup_list(fs->svc, cq_dent, d);
	case L_ACTIVE:
	case L_APID:
	case L_BYNAME:
	case L_WAITING:
	case L_WPID:
		break;
	default:
		return 0;
	}
	if ((err = all_leases(fs, &in)))
		return err;
	for (uint32_t k = 0; k < in.n; k++) {
		const struct lease_info *li = &in.v[k];
		uint32_t id = n->ctl == L_ACTIVE ? 0 : intern(fs, li->name);
		if (n->ctl == L_ACTIVE) {
			snprintf(buf, sizeof(buf), "%" PRIu32, li->holder.pid);
			if (!dents_has(d, buf))
				dents_add(d, buf, L_APID, li->holder.pid);
		} else if (n->ctl == L_APID && li->holder.pid == n->ctl_key && id) {
			uint64_t key = grant_key(fs, li->name, li->token);
			if (key)
				dents_add(d, li->name, L_LEASE, key);
		} else if (n->ctl == L_BYNAME && id) {
			dents_add(d, li->name, L_LINK, lkey(id, li->holder.pid));
		} else if (n->ctl == L_WAITING || n->ctl == L_WPID) {
			/* a waiter waits behind a holder: the held names cover them */
			struct wscan s = {fs, li->name, n->ctl == L_WPID ? (uint32_t)n->ctl_key : 0, d};
			uint32_t before = d->n;
			struct unlocked u = drop(fs);
			lease_list_waiters(lsvc(fs), li->name, scan_waiter, &s);
			retake(u);
			if (n->ctl == L_WPID && d->n > before)
				d->v[before].key = lkey(id, (uint32_t)n->ctl_key);
		}
	}
	free(in.v);
	return 0;
}

int ctl_lease_readdir(struct txd_fs *fs, struct node *n, uint64_t off, bool plus,
		      txd_fill_fn fill, void *arg)
{
	struct ldents d = {0};
	int err = list_children(fs, n, &d);
	for (uint64_t k = off < 3 ? 0 : off - 2; !err && k < d.n; k++)
		if (ctl_fill(fs, d.v[k].name, d.v[k].kind, d.v[k].key, plus, k + 3, fill, arg))
			break;
	free(d.v);
	return err;
}

/* ---- mkdir / rmdir / touch ----------------------------------------------------- */
static int grab(struct txd_fs *fs, const struct txd_cred *c, uint32_t pid, const char *name,
		bool queue, struct txd_entry *e)
{
	struct lease_who by;
	struct proc_id target;
	struct lease_cycle cycle;
	uint64_t token = 0;
	int err = strlen(name) > LEASE_NAME_MAX ? -ENAMETOOLONG : lease_name_check(name);
	uint32_t id = err ? 0 : intern(fs, name);

	if (err || !id)
		return err ? err : -ENOMEM;
	if ((err = who(fs, c, &by)))
		return err;
	if (by.proc.pid == pid)
		target = by.proc; /* the caller's own process: always (SPEC §5), and live */
	else if ((err = proc_may_act_for(lproc(fs), c->uid, pid, &target)))
		return err == -ESRCH ? -ENOENT : err; /* a (cached) dead PID's directory */
	struct unlocked u = drop(fs);
	fs_will_block(fs); /* the grant waits for the WAL's sync */
	if (queue)
		err = lease_wait(lsvc(fs), name, &by, &target, 0, &cycle, &token);
	else
		err = lease_grant(lsvc(fs), name, &by, &target, 0, &token);
	retake(u);
	if (err)
		return err;
	if (queue)
		return ctl_entry(fs, L_WAIT, lkey(id, target.pid), e);
	return ctl_entry(fs, L_LEASE, grant_key(fs, name, token), e); /* one node per grant */
}

int ctl_lease_mkdir(struct txd_fs *fs, const struct txd_cred *c, struct node *parent,
		    const char *name, struct txd_entry *e)
{
	if (parent->ctl == L_APID || parent->ctl == L_WPID)
		return grab(fs, c, (uint32_t)parent->ctl_key, name, parent->ctl == L_WPID, e);
	return -EPERM;
}

int ctl_lease_rmdir(struct txd_fs *fs, const struct txd_cred *c, struct node *parent,
		    const char *name)
{
	struct lease_info li;
	struct lease_who by;
	struct proc_id waiter;
	uint32_t pid = (uint32_t)parent->ctl_key;
	int err;

	if (parent->ctl != L_APID && parent->ctl != L_WPID)
		return -EPERM;
	if (lease_name_check(name))
		return -ENOENT;
	if ((err = who(fs, c, &by)))
		return err;
	if (parent->ctl == L_APID) {
		if ((err = held_by(fs, name, pid, &li)))
			return err;
		struct unlocked u = drop(fs);
		fs_will_block(fs); /* the release waits for the WAL's sync */
		err = lease_release(lsvc(fs), name, li.token, &by);
		retake(u);
		return err;
	}
	if (proc_identify(lproc(fs), pid, &waiter))
		return -ENOENT; /* gone: its waits went with it */
	struct unlocked u = drop(fs);
	err = lease_wait_cancel(lsvc(fs), name, &by, &waiter);
	retake(u);
	return err;
}

/* unlink by-name/NAME: break the lease (its uid or root; lease.h). */
int ctl_lease_unlink(struct txd_fs *fs, const struct txd_cred *c, struct node *parent,
		     const char *name)
{
	struct lease_info li;
	struct lease_who by;
	int err;

	if (parent->ctl != L_BYNAME)
		return ctl_lease_is_dir(parent->ctl) ? -EPERM : -ENOTDIR;
	if (lease_name_check(name) || current(fs, name, &li))
		return -ENOENT;
	if ((err = who(fs, c, &by)))
		return err;
	struct unlocked u = drop(fs);
	fs_will_block(fs); /* the break waits for the WAL's sync */
	err = lease_break(lsvc(fs), name, li.token, &by);
	retake(u);
	return err;
}

/* Renew the grant whose token is key (while current) as the caller; ttl_ns
 * or LEASE_TTL_KEEP. fs->lock held, released meanwhile. */
static int renew(struct txd_fs *fs, const struct txd_cred *c, uint64_t key, uint64_t ttl_ns)
{
	struct lease_info li;
	struct lease_who by;
	int err = grant_of(fs, key, &li);
	if (err || (err = who(fs, c, &by)))
		return err;
	struct unlocked u = drop(fs);
	fs_will_block(fs);
	err = lease_renew(lsvc(fs), li.name, li.token, &by, ttl_ns);
	retake(u);
	return err;
}

int ctl_lease_touch(struct txd_fs *fs, const struct txd_cred *c, struct node *n)
{
	return n->ctl == L_LEASE ? renew(fs, c, n->ctl_key, LEASE_TTL_KEEP) : 0;
}

/* `echo 30 > ttl` (ctl_lease.h). */
static int parse_ttl(const char *buf, size_t size, uint64_t *ttl_ns)
{
	uint64_t v = 0;
	size_t k = 0;
	while (size && (buf[size - 1] == '\n' || buf[size - 1] == ' '))
		size--;
	if (!size)
		return -EINVAL;
	for (; k < size && buf[k] >= '0' && buf[k] <= '9'; k++)
		if ((v = v * 10 + (uint64_t)(buf[k] - '0')) > LEASE_TTL_MAX_S)
			v = LEASE_TTL_MAX_S + 1; /* saturate: huge is ERANGE, not garbage */
	if (k != size || v == 0)
		return -EINVAL;
	if (v > LEASE_TTL_MAX_S)
		return -ERANGE;
	*ttl_ns = v * 1000000000ull;
	return 0;
}

ssize_t ctl_lease_write(struct txd_fs *fs, const struct txd_cred *c, struct handle *h,
			const void *buf, size_t size)
{
	uint64_t ttl_ns;
	if (h->node->ctl != L_TTL)
		return -EACCES;
	if (size > 32)
		return -EINVAL;
	int err = parse_ttl(buf, size, &ttl_ns);
	if (err)
		return err;
	pthread_mutex_lock(&fs->lock);
	err = renew(fs, c, h->node->ctl_key, ttl_ns);
	pthread_mutex_unlock(&fs->lock);
	if (!err)
		svc_kick(fs->svc); /* a new expiry for the tick (svc.h V4) */
	return err ? err : (ssize_t)size;
}

/* ---- rendering ----------------------------------------------------------------- */
/* A process's command as the kernel has it (/proc/PID/comm without the
 * kernel's newline; "" when unreadable): raw bytes, NUL-terminated. */
static void command_raw(uint32_t pid, char *out, size_t cap)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%" PRIu32 "/comm", pid);
	int fd = txd_os->open(path, O_RDONLY | O_CLOEXEC, 0);
	ssize_t n = fd >= 0 ? txd_os->pread(fd, out, cap - 1, 0) : 0;
	if (fd >= 0)
		txd_os->close(fd);
	if (n > 0 && out[n - 1] == '\n')
		n--; /* the kernel's own newline (a \n inside the name stays) */
	out[n > 0 ? n : 0] = 0;
}

/* For a line (owner): raw escaped as the status line escapes a path (SPEC
 * §4: \n and \\), plus \" and \xHH for other control bytes. JSON
 * (info.json) carries the raw name instead (json.h escapes it). */
static void command_line(const char *raw, char *out, size_t cap)
{
	size_t o = 0;
	for (const char *p = raw; *p && o + 5 < cap; p++) {
		unsigned char ch = (unsigned char)*p;
		if (ch == '\n')
			o += (size_t)snprintf(out + o, cap - o, "\\n");
		else if (ch == '\\' || ch == '"')
			o += (size_t)snprintf(out + o, cap - o, "\\%c", ch);
		else if (ch < 0x20 || ch == 0x7f)
			o += (size_t)snprintf(out + o, cap - o, "\\x%02x", ch);
		else
			out[o++] = (char)ch;
	}
	out[o] = 0;
}

static void expires_text(const struct lease_info *li, char *buf, size_t cap)
{
	if (!li->expires_mono_ns) {
		snprintf(buf, cap, "never");
		return;
	}
	uint64_t now_m = txd_os->now_monotonic_ns(), now_r = txd_os->now_realtime_ns();
	uint64_t left = li->expires_mono_ns > now_m ? li->expires_mono_ns - now_m : 0;
	ev_rfc3339(now_r + left, buf, cap);
}

static cJSON *lease_json(const struct lease_info *li, const char *command)
{
	char t[64];
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return NULL;
	cJSON_AddStringToObject(o, "name", li->name);
	ev_add_u64(o, "token", li->token);
	ev_add_u64(o, "pid", li->holder.pid);
	ev_add_u64(o, "start", li->holder.start);
	ev_add_u64(o, "uid", li->uid);
	if (command)
		cJSON_AddStringToObject(o, "command", command);
	ev_rfc3339(li->acquired_ns, t, sizeof(t));
	cJSON_AddStringToObject(o, "acquired", t);
	expires_text(li, t, sizeof(t));
	cJSON_AddStringToObject(o, "expires", t);
	ev_add_u64(o, "ttl", li->ttl_ns / 1000000000ull);
	return o;
}

static int json_out(cJSON *o, char **buf, size_t *len)
{
	char *txt = o ? json_print(o, true) : NULL;
	cJSON_Delete(o);
	if (!txt)
		return -ENOMEM;
	int n = asprintf(buf, "%s\n", txt);
	free(txt);
	if (n < 0)
		return -ENOMEM;
	*len = (size_t)n;
	return 0;
}

static int render_done(struct txd_fs *fs, uint64_t token, char **buf, size_t *len)
{
	struct lease_completed c;
	char t[64];
	int err = find_done(fs, token, &c);
	if (err)
		return err;
	cJSON *o = lease_json(&c.lease, NULL);
	if (!o)
		return -ENOMEM;
	cJSON_DeleteItemFromObject(o, "expires");
	cJSON_AddStringToObject(o, "how", lease_end_name(c.how));
	ev_add_u64(o, "by_pid", c.by.proc.pid);
	ev_add_u64(o, "by_uid", c.by.uid);
	ev_rfc3339(c.ended_ns, t, sizeof(t));
	cJSON_AddStringToObject(o, "ended", t);
	return json_out(o, buf, len);
}

int ctl_lease_render(struct txd_fs *fs, struct node *n, char **buf, size_t *len)
{
	struct lease_info li;
	char cmd[256], raw[64], t[64];
	int err, k;

	if (n->ctl == L_DONE)
		return render_done(fs, n->ctl_key, buf, len);
	if (n->ctl == L_CQ) {
		if ((err = cq_find(fs, (uint32_t)n->ctl_key, buf)))
			return err;
		*len = strlen(*buf);
		return 0;
	}
	if (n->ctl == L_GRANTED) {
		if ((err = wait_entry(fs, n->ctl_key, &li)))
			return err;
		if (!li.token)
			return -EAGAIN; /* not granted yet: the blocking read is to come */
		k = asprintf(buf, "%" PRIu64 "\n", li.token);
		goto out;
	}
	if (ctl_lease_is_dir(n->ctl) || n->ctl == L_LINK)
		return -EISDIR;
	if ((err = node_lease(fs, n, &li)))
		return err;
	switch (n->ctl) {
	case L_TOKEN:
		k = asprintf(buf, "%" PRIu64 "\n", li.token);
		break;
	case L_ACQUIRED:
		ev_rfc3339(li.acquired_ns, t, sizeof(t));
		k = asprintf(buf, "%s\n", t);
		break;
	case L_EXPIRES:
		expires_text(&li, t, sizeof(t));
		k = asprintf(buf, "%s\n", t);
		break;
	case L_TTL:
		k = asprintf(buf, "%" PRIu64 "\n", (uint64_t)(li.ttl_ns / 1000000000ull));
		break;
	case L_OWNER:
		command_raw(li.holder.pid, raw, sizeof(raw));
		command_line(raw, cmd, sizeof(cmd));
		k = asprintf(buf, "pid=%" PRIu32 " start=%" PRIu64 " uid=%" PRIu32 " command=%s\n",
			     li.holder.pid, li.holder.start, li.uid, cmd);
		break;
	case L_INFO: {
		command_raw(li.holder.pid, raw, sizeof(raw));
		return json_out(lease_json(&li, raw), buf, len); /* raw: JSON escapes it */
	}
	default:
		return -EINVAL;
	}
out:
	if (k < 0)
		return -ENOMEM;
	*len = (size_t)k;
	return 0;
}

/* ---- waits: released and granted (SPEC §5 "Waiting without polling") ---------- */
/* w became ready (wlock held): what to call once it is released. */
static void ready_locked(struct ctl_leases *cl, struct lwait *w, struct ctl_wakes *wl)
{
	w->ready = true;
	svc_wait_observe(cl->fs->svc, txd_os->now_monotonic_ns() - w->opened_ns);
	ctl_waiter_ready(&w->cw, wl);
}

/* The lease service's events (svc_set_listener): no service lock and no
 * fs->lock held. A release readies the `released` waits of that grant, a
 * grant the `granted` waits of its holder. */
static void on_lease_event(void *arg, const struct lease_event *ev)
{
	struct ctl_leases *cl = arg;
	struct ctl_wakes wl = {.n = 0};
	if (ev->kind != LEV_RELEASE && ev->kind != LEV_GRANT)
		return;
	pthread_mutex_lock(&cl->wlock);
	for (uint32_t k = 0; ev->kind == LEV_RELEASE && k < cl->ngone; k++)
		if (cl->gone[k].token == ev->lease.token) /* tokens are never reused */
			cl->gone[k--] = cl->gone[--cl->ngone];
	for (struct lwait *w = cl->waits.next; w != &cl->waits; w = w->next) {
		if (w->ready || strcmp(w->name, ev->lease.name) != 0)
			continue;
		if (ev->kind == LEV_RELEASE && !w->granted && w->token == ev->lease.token) {
			w->how = ev->how;
			ready_locked(cl, w, &wl);
		} else if (ev->kind == LEV_GRANT && w->granted && w->pid == ev->lease.holder.pid) {
			w->result = ev->lease.token;
			ready_locked(cl, w, &wl);
		}
	}
	pthread_mutex_unlock(&cl->wlock);
	ctl_wakes_run(&wl);
}

int ctl_lease_wait_open(struct txd_fs *fs, struct node *n, struct lwait **out)
{
	struct ctl_leases *cl = state(fs);
	struct lease_info li;
	bool granted = n->ctl == L_GRANTED;
	/* granted: the waiting entry's key (name_id, pid); released: the
	 * grant's (its token) */
	const char *name = granted ? name_of(fs, n->ctl_key) : grant_name(fs, n->ctl_key);
	struct lwait *w = cl && name ? calloc(1, sizeof(*w)) : NULL;
	int err;

	if (!w)
		return cl && name ? -ENOMEM : -ENOENT;
	w->granted = granted;
	snprintf(w->name, sizeof(w->name), "%s", name);
	w->pid = granted ? (uint32_t)(n->ctl_key & PID_MASK) : 0;
	w->key = granted ? n->ctl_key : 0;
	w->opened_ns = txd_os->now_monotonic_ns();
	if (!w->granted) {
		if ((err = grant_of(fs, n->ctl_key, &li))) {
			free(w);
			return err;
		}
		w->token = li.token;
	}
	/* registered first, checked after: an event in between is not lost */
	pthread_mutex_lock(&cl->wlock);
	w->next = &cl->waits;
	w->prev = cl->waits.prev;
	w->prev->next = w;
	cl->waits.prev = w;
	pthread_mutex_unlock(&cl->wlock);
	/* granted: one look at pid's standing (a grant between a "holds?"
	 * and a "waits?" look would be missed) */
	err = w->granted ? standing(fs, w->name, w->pid, &li) : current(fs, w->name, &li);
	pthread_mutex_lock(&cl->wlock);
	if (!w->ready && !w->granted && (err || li.token != w->token))
		w->ready = true; /* ended before the registration */
	else if (!w->ready && w->granted && err == 0) {
		w->ready = true; /* granted already */
		w->result = li.token;
	}
	pthread_mutex_unlock(&cl->wlock);
	if (w->granted && !w->ready && err < 0) {
		ctl_lease_wait_close(fs, w);
		return -ENOENT; /* neither waits nor holds (any more) */
	}
	*out = w;
	return 0;
}

void ctl_lease_wait_close(struct txd_fs *fs, struct lwait *w)
{
	struct ctl_leases *cl = fs->ctl_leases;
	struct ctl_wakes wl = {.n = 0};

	pthread_mutex_lock(&cl->wlock);
	w->prev->next = w->next;
	w->next->prev = w->prev;
	ctl_waiter_close(&w->cw, &wl);
	pthread_mutex_unlock(&cl->wlock);
	ctl_wakes_run(&wl);
	free(w);
}

/* wlock held. Out of memory: the entry stays, as it did before reads. A
 * grant that ended before its `granted` was read leaves a stale pair (its
 * release went by): harmless, and the oldest go past GONE_MAX. */
#define GONE_MAX 4096

static void mark_gone(struct ctl_leases *cl, uint64_t key, uint64_t token)
{
	for (uint32_t k = 0; k < cl->ngone; k++)
		if (cl->gone[k].key == key && cl->gone[k].token == token)
			return;
	if (cl->ngone >= GONE_MAX)
		memmove(cl->gone, cl->gone + 1, --cl->ngone * sizeof(*cl->gone));
	if (!array_grow((void **)&cl->gone, &cl->capgone, cl->ngone + 1, sizeof(*cl->gone)))
		cl->gone[cl->ngone++] = (struct gone){key, token};
}

ssize_t ctl_lease_wait_read(struct txd_fs *fs, struct lwait *w, void *buf, size_t size,
			    uint64_t off, bool nonblock, void (*done)(void *arg, int err), void *arg)
{
	struct ctl_leases *cl = fs->ctl_leases;
	char text[48];
	ssize_t n;

	pthread_mutex_lock(&cl->wlock);
	if (!w->ready) {
		n = ctl_waiter_defer(&w->cw, nonblock, done, arg);
		pthread_mutex_unlock(&cl->wlock);
		return n;
	}
	if (w->granted)
		snprintf(text, sizeof(text), "%" PRIu64 "\n", w->result);
	else
		snprintf(text, sizeof(text), "%s\n", w->how ? lease_end_name(w->how) : "released");
	size_t len = strlen(text);
	n = off >= len ? 0 : (ssize_t)(len - off < size ? len - off : size);
	if (w->granted && off + (size_t)n >= len)
		mark_gone(cl, w->key, w->result); /* read in full: the entry goes */
	pthread_mutex_unlock(&cl->wlock);
	if (n)
		memcpy(buf, text + off, (size_t)n);
	return n;
}

int ctl_lease_wait_cancel(struct txd_fs *fs, void *arg)
{
	struct ctl_leases *cl = fs->ctl_leases;
	int err = -ENOENT;
	if (!cl)
		return err;
	pthread_mutex_lock(&cl->wlock);
	for (struct lwait *w = cl->waits.next; w != &cl->waits && err; w = w->next)
		if (ctl_waiter_cancel(&w->cw, arg))
			err = 0;
	pthread_mutex_unlock(&cl->wlock);
	return err;
}

int ctl_lease_wait_poll(struct txd_fs *fs, struct lwait *w, void (*wake)(void *arg), void *arg)
{
	struct ctl_leases *cl = fs->ctl_leases;
	struct ctl_wakes wl = {.n = 0};
	int ready;

	pthread_mutex_lock(&cl->wlock);
	ready = w->ready;
	if (!ready && wake)
		ctl_waiter_poll(&w->cw, wake, arg, &wl);
	pthread_mutex_unlock(&cl->wlock);
	ctl_wakes_run(&wl);
	return ready;
}
