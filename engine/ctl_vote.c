/*
 * ctl_vote.c — `.txdir/consensus/` and `.txdir/dtc/participant_inbox/` over
 * the vote service (ctl_vote.h).
 *
 * State: the interned participant names of the inbox and the open wait
 * files live in one struct ctl_votes, created at first use and registered
 * as the vote listener's argument (svc_set_vote_listener), so the services
 * host frees it at svc_close.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core.h"
#include "ctl_lease.h" /* ctl_entry, ctl_fill */
#include "ctl_vote.h"
#include "ctl_wait.h"
#include "events.h"
#include "json.h"
#include "os.h"
#include "svc.h"
#include "util.h"

#define IDX_BITS 10 /* VOTE_PARTICIPANTS_MAX = 1 << IDX_BITS */
#define IDX_MASK ((1ull << IDX_BITS) - 1)
#define NAME_IDS (1u << 19) /* inbox keys: name_id << 32 | id, below 2^52 */

enum {
	V_ROOT = CTL_VOTE_FIRST, /* .txdir/consensus */
	V_PROPOSALS,
	V_VOTES,
	V_DECISIONS,
	V_PROP, /* proposals/P (key: id) */
	V_INFO, /* its files, in readdir order */
	V_PARTS,
	V_PAYLOAD,
	V_TIMEOUT,
	V_WAIT,
	V_VPROP,    /* votes/P */
	V_BALLOT,   /* votes/P/NAME (key: id << 10 | index) */
	V_DECISION, /* decisions/P */
	V_INBOX,    /* .txdir/dtc/participant_inbox */
	V_INAME,    /* participant_inbox/NAME (key: name id) */
	V_IENTRY,   /* participant_inbox/NAME/P (key: name id << 32 | id) */
	V_END
};

struct vent {
	const char *name;
	unsigned kind;
};

static const struct vent root_ents[] = {
	{"decisions", V_DECISIONS},
	{"proposals", V_PROPOSALS},
	{"votes", V_VOTES},
};
static const struct vent prop_ents[] = {
	{"info.json", V_INFO},	{"participants", V_PARTS}, {"payload", V_PAYLOAD},
	{"timeout", V_TIMEOUT}, {"wait", V_WAIT},
};
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* An open proposals/P/wait. Lives from open to release; wlock. */
struct vwait {
	struct vwait *next, *prev;
	uint64_t id;
	bool ready;
	int err; /* ready: -ENOENT when P went undecided */
	char text[VOTE_REASON_MAX + 80];
	struct ctl_waiter cw; /* its reader's deferred read and poll */
};

struct ctl_votes {
	pthread_mutex_t wlock; /* the waits and the names (a leaf) */
	struct vwait waits;    /* list head */
	char **names;	       /* interned inbox names, by id - 1 */
	uint32_t nnames, capnames;
};

static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;

static void on_vote_event(void *arg, const struct vote_event *ev);

static void state_free(void *arg)
{
	struct ctl_votes *cv = arg;

	for (uint32_t k = 0; k < cv->nnames; k++)
		free(cv->names[k]);
	free(cv->names);
	pthread_mutex_destroy(&cv->wlock);
	free(cv);
}

static struct ctl_votes *state(struct txd_fs *fs)
{
	pthread_mutex_lock(&init_lock);
	struct ctl_votes *cv = svc_vote_listener_arg(fs->svc);
	if (!cv && (cv = calloc(1, sizeof(*cv)))) {
		pthread_mutex_init(&cv->wlock, NULL);
		cv->waits.next = cv->waits.prev = &cv->waits;
		svc_set_vote_listener(fs->svc, on_vote_event, cv, state_free);
	}
	pthread_mutex_unlock(&init_lock);
	return cv;
}

static struct vote_svc *vsvc(struct txd_fs *fs)
{
	return svc_vote(fs->svc);
}

/* The id of an inbox name, interned on first use; 0 when out of memory. */
static uint32_t intern(struct txd_fs *fs, const char *name)
{
	struct ctl_votes *cv = state(fs);
	uint32_t id = 0;

	if (!cv)
		return 0;
	pthread_mutex_lock(&cv->wlock);
	for (uint32_t k = 0; k < cv->nnames && !id; k++)
		if (!strcmp(cv->names[k], name))
			id = k + 1;
	if (!id && cv->nnames + 1 < NAME_IDS &&
	    !array_grow((void **)&cv->names, &cv->capnames, cv->nnames + 1, sizeof(char *)) &&
	    (cv->names[cv->nnames] = strdup(name)))
		id = ++cv->nnames;
	pthread_mutex_unlock(&cv->wlock);
	return id;
}

static bool name_of(struct txd_fs *fs, uint32_t id, char *out)
{
	struct ctl_votes *cv = state(fs);
	bool ok = false;

	if (!cv)
		return false;
	pthread_mutex_lock(&cv->wlock);
	if (id >= 1 && id <= cv->nnames) {
		snprintf(out, VOTE_NAME_MAX + 1, "%s", cv->names[id - 1]);
		ok = true;
	}
	pthread_mutex_unlock(&cv->wlock);
	return ok;
}

/* ---- kinds ------------------------------------------------------------------- */
bool ctl_vote_owns(unsigned kind)
{
	return kind >= CTL_VOTE_FIRST && kind < V_END;
}

bool ctl_vote_is_dir(unsigned kind)
{
	return kind <= V_PROP || kind == V_VPROP || kind == V_INBOX || kind == V_INAME;
}

bool ctl_vote_cacheable(unsigned kind)
{
	return (kind >= V_ROOT && kind <= V_DECISIONS) || kind == V_INBOX;
}

unsigned ctl_vote_root_kind(void)
{
	return V_ROOT;
}

unsigned ctl_vote_inbox_kind(void)
{
	return V_INBOX;
}

bool ctl_vote_is_wait(unsigned kind)
{
	return kind == V_WAIT;
}

int ctl_vote_create_err(unsigned kind)
{
	return kind == V_VPROP ? -ENOENT : -EPERM;
}

bool ctl_vote_writable(unsigned kind)
{
	return kind == V_PARTS || kind == V_PAYLOAD || kind == V_TIMEOUT || kind == V_BALLOT;
}

/* ---- the service, called with fs->lock released (as ctl_lease.c) ------------ */
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

static int by_name(struct txd_fs *fs, const char *name, struct vote_info *vi)
{
	if (vote_name_check(name))
		return -ENOENT;
	struct unlocked u = drop(fs);
	int err = vote_get(vsvc(fs), name, vi);
	retake(u);
	return err;
}

/* fs->lock held or not: the vote service has its own lock. */
static int by_id(struct txd_fs *fs, uint64_t id, struct vote_info *vi)
{
	return vote_get_by_id(vsvc(fs), id, vi);
}

struct nth {
	unsigned want, at;
	char *name;
	int vote;
	bool found;
};

static int nth_part(void *arg, const char *name, int vote)
{
	struct nth *n = arg;
	if (n->at++ == n->want) {
		snprintf(n->name, VOTE_NAME_MAX + 1, "%s", name);
		n->vote = vote;
		n->found = true;
		return 1;
	}
	return 0;
}

/* votes/P/NAME of key: the proposal, NAME and its vote. */
static int ballot_of(struct txd_fs *fs, uint64_t key, struct vote_info *vi, char *name, int *vote)
{
	int err = by_id(fs, key >> IDX_BITS, vi);
	struct nth n = {.want = (unsigned)(key & IDX_MASK), .name = name};
	if (err)
		return err;
	(void)vote_list_participants(vsvc(fs), vi->name, nth_part, &n);
	if (!n.found)
		return -ENOENT;
	*vote = n.vote;
	return 0;
}

struct find {
	const char *name;
	unsigned at;
	int idx, vote;
};

static int find_part(void *arg, const char *name, int vote)
{
	struct find *f = arg;
	if (!strcmp(name, f->name)) {
		f->idx = (int)f->at;
		f->vote = vote;
		return 1;
	}
	f->at++;
	return 0;
}

/* Is participant a pending voter of open proposal p? */
static bool pending(struct txd_fs *fs, const struct vote_info *vi, const char *participant)
{
	struct find f = {.name = participant, .idx = -1};
	if (vi->state != VOTE_OPENED && vi->state != VOTE_DECIDING)
		return false;
	(void)vote_list_participants(vsvc(fs), vi->name, find_part, &f);
	return f.idx >= 0 && f.vote < 0;
}

static int who(struct txd_fs *fs, const struct txd_cred *c, struct proc_id *by)
{
	memset(by, 0, sizeof(*by));
	return c && c->pid > 0 ? proc_identify(svc_proc(fs->svc), (uint32_t)c->pid, by) : 0;
}

/* ---- lookup ------------------------------------------------------------------ */
static int lookup_table(struct txd_fs *fs, const struct vent *t, size_t n, const char *name,
			uint64_t key, struct txd_entry *e)
{
	for (size_t k = 0; k < n; k++)
		if (strcmp(name, t[k].name) == 0)
			return ctl_entry(fs, t[k].kind, key, e);
	return -ENOENT;
}

int ctl_vote_lookup(struct txd_fs *fs, struct node *parent, const char *name, struct txd_entry *e)
{
	struct vote_info vi;
	uint32_t nid;

	switch (parent->ctl) {
	case V_ROOT:
		return lookup_table(fs, root_ents, NELEM(root_ents), name, 0, e);
	case V_PROPOSALS:
		return by_name(fs, name, &vi) ? -ENOENT : ctl_entry(fs, V_PROP, vi.id, e);
	case V_PROP:
		if (by_id(fs, parent->ctl_key, &vi))
			return -ENOENT;
		return lookup_table(fs, prop_ents, NELEM(prop_ents), name, parent->ctl_key, e);
	case V_VOTES:
		if (by_name(fs, name, &vi) || vi.state == VOTE_CREATED)
			return -ENOENT;
		return ctl_entry(fs, V_VPROP, vi.id, e);
	case V_VPROP: {
		struct find f = {.name = name, .idx = -1};
		if (vote_name_check(name) || by_id(fs, parent->ctl_key, &vi))
			return -ENOENT;
		(void)vote_list_participants(vsvc(fs), vi.name, find_part, &f);
		if (f.idx < 0)
			return -ENOENT;
		return ctl_entry(fs, V_BALLOT, parent->ctl_key << IDX_BITS | (uint64_t)f.idx, e);
	}
	case V_DECISIONS:
		if (by_name(fs, name, &vi) || vi.state != VOTE_DECIDED)
			return -ENOENT;
		return ctl_entry(fs, V_DECISION, vi.id, e);
	case V_INBOX:
		if (vote_name_check(name))
			return -ENOENT;
		if (!(nid = intern(fs, name)))
			return -ENOMEM;
		return ctl_entry(fs, V_INAME, nid, e);
	case V_INAME: {
		char who_[VOTE_NAME_MAX + 1];
		if (!name_of(fs, (uint32_t)parent->ctl_key, who_) || by_name(fs, name, &vi) ||
		    !pending(fs, &vi, who_) || vi.id >> 32)
			return -ENOENT;
		return ctl_entry(fs, V_IENTRY, parent->ctl_key << 32 | vi.id, e);
	}
	default:
		return ctl_vote_is_dir(parent->ctl) ? -ENOENT : -ENOTDIR;
	}
}

/* ---- attributes -------------------------------------------------------------- */
int ctl_vote_getattr(struct txd_fs *fs, struct node *n, struct txd_attr *a)
{
	struct vote_info vi;
	char name[VOTE_NAME_MAX + 1];
	int vote, err = 0;

	a->nlink = 1;
	switch (n->ctl) {
	case V_PROPOSALS:
		a->mode = S_IFDIR | 01777; /* the sticky bit: rmdir by its creator or root */
		break;
	case V_PROP:
		if ((err = by_id(fs, n->ctl_key, &vi)))
			return err;
		a->mode = S_IFDIR | 0755;
		a->uid = vi.uid;
		break;
	case V_VPROP:
		if ((err = by_id(fs, n->ctl_key, &vi)) || vi.state == VOTE_CREATED)
			return err ? err : -ENOENT;
		/* writable, so the kernel passes a create to us: ENOENT */
		a->mode = S_IFDIR | 0777;
		break;
	case V_BALLOT:
		if ((err = ballot_of(fs, n->ctl_key, &vi, name, &vote)))
			return err;
		a->mode = S_IFREG | 0666; /* one trust domain (ctl_vote.h) */
		return 0;
	case V_DECISION:
		if ((err = by_id(fs, n->ctl_key, &vi)) || vi.state != VOTE_DECIDED)
			return err ? err : -ENOENT;
		a->mode = S_IFREG | 0444;
		a->uid = vi.uid;
		return 0;
	case V_PARTS:
	case V_PAYLOAD:
	case V_TIMEOUT:
	case V_INFO:
	case V_WAIT:
		/* an open file stays fstat-able after its proposal went (as an
		 * unlinked file); lookup decides existence */
		a->mode = ctl_vote_writable(n->ctl) ? S_IFREG | 0644 : S_IFREG | 0444;
		a->uid = by_id(fs, n->ctl_key, &vi) ? 0 : vi.uid;
		return 0;
	case V_IENTRY:
		a->mode = S_IFREG | 0444;
		return 0;
	default:
		a->mode = S_IFDIR | 0555;
		break;
	}
	a->nlink = 2;
	a->size = 4096;
	return 0;
}

/* ---- readdir ----------------------------------------------------------------- */
struct vdent {
	char name[VOTE_NAME_MAX + 1];
	unsigned kind;
	uint64_t key;
};

struct vdents {
	struct vdent *v;
	uint32_t n, cap;
	unsigned parent;	 /* the listing's kind */
	uint64_t nid;		 /* V_INAME: the name's id */
	struct vote_info *infos; /* V_INAME: proposals, checked after the walk */
	struct txd_fs *fs;
	uint32_t ninfos, capinfos;
};

static void dents_add(struct vdents *d, const char *name, unsigned kind, uint64_t key)
{
	if (array_grow((void **)&d->v, &d->cap, d->n + 1, sizeof(*d->v)))
		return;
	snprintf(d->v[d->n].name, sizeof(d->v[d->n].name), "%s", name);
	d->v[d->n].kind = kind;
	d->v[d->n].key = key;
	d->n++;
}

static int list_one(void *arg, const struct vote_info *vi)
{
	struct vdents *d = arg;
	switch (d->parent) {
	case V_PROPOSALS:
		dents_add(d, vi->name, V_PROP, vi->id);
		break;
	case V_VOTES:
		if (vi->state != VOTE_CREATED)
			dents_add(d, vi->name, V_VPROP, vi->id);
		break;
	case V_DECISIONS:
		if (vi->state == VOTE_DECIDED)
			dents_add(d, vi->name, V_DECISION, vi->id);
		break;
	case V_INAME:
		if ((vi->state == VOTE_OPENED || vi->state == VOTE_DECIDING) && !(vi->id >> 32) &&
		    !array_grow((void **)&d->infos, &d->capinfos, d->ninfos + 1, sizeof(*vi)))
			d->infos[d->ninfos++] = *vi;
		break;
	}
	return 0;
}

static int list_part(void *arg, const char *name, int vote)
{
	struct vdents *d = arg;
	(void)vote;
	dents_add(d, name, V_BALLOT, d->nid << IDX_BITS | d->n);
	return 0;
}

/* participant_inbox/: a participant without a vote, once (its name id is
 * interned when listed; d->fs set by the caller). */
static int list_waiting(void *arg, const char *name, int vote)
{
	struct vdents *d = arg;
	uint32_t id;

	if (vote >= 0)
		return 0;
	for (uint32_t k = 0; k < d->n; k++)
		if (!strcmp(d->v[k].name, name))
			return 0;
	if ((id = intern(d->fs, name)))
		dents_add(d, name, V_INAME, id);
	return 0;
}

static int list_children(struct txd_fs *fs, struct node *n, struct vdents *d)
{
	struct vote_info vi;
	char who_[VOTE_NAME_MAX + 1];

	d->parent = n->ctl;
	d->fs = fs;
	switch (n->ctl) {
	case V_ROOT:
		for (size_t k = 0; k < NELEM(root_ents); k++)
			dents_add(d, root_ents[k].name, root_ents[k].kind, 0);
		return 0;
	case V_PROP:
		if (by_id(fs, n->ctl_key, &vi))
			return -ENOENT;
		for (size_t k = 0; k < NELEM(prop_ents); k++)
			dents_add(d, prop_ents[k].name, prop_ents[k].kind, n->ctl_key);
		return 0;
	case V_VPROP:
		if (by_id(fs, n->ctl_key, &vi))
			return -ENOENT;
		d->nid = n->ctl_key;
		return vote_list_participants(vsvc(fs), vi.name, list_part, d) == -ENOENT ? -ENOENT
											  : 0;
	case V_PROPOSALS:
	case V_VOTES:
	case V_DECISIONS:
		return vote_list(vsvc(fs), list_one, d);
	case V_INAME:
		if (!name_of(fs, (uint32_t)n->ctl_key, who_))
			return -ENOENT;
		(void)vote_list(vsvc(fs), list_one, d);
		for (uint32_t k = 0; k < d->ninfos; k++)
			if (pending(fs, &d->infos[k], who_))
				dents_add(d, d->infos[k].name, V_IENTRY,
					  n->ctl_key << 32 | d->infos[k].id);
		free(d->infos);
		return 0;
	case V_INBOX:
		/* the names some open proposal waits for (any valid name can
		 * also be looked up, empty) */
		d->parent = V_INAME; /* collect the open proposals */
		(void)vote_list(vsvc(fs), list_one, d);
		for (uint32_t k = 0; k < d->ninfos; k++)
			(void)vote_list_participants(vsvc(fs), d->infos[k].name, list_waiting, d);
		free(d->infos);
		return 0;
	default:
		return 0;
	}
}

int ctl_vote_readdir(struct txd_fs *fs, struct node *n, uint64_t off, bool plus, txd_fill_fn fill,
		     void *arg)
{
	struct vdents d = {0};
	struct unlocked u = drop(fs);
	int err = list_children(fs, n, &d);
	retake(u);
	for (uint64_t k = off < 3 ? 0 : off - 2; !err && k < d.n; k++)
		if (ctl_fill(fs, d.v[k].name, d.v[k].kind, d.v[k].key, plus, k + 3, fill, arg))
			break;
	free(d.v);
	return err;
}

/* ---- mkdir / rmdir ---------------------------------------------------------------- */
int ctl_vote_mkdir(struct txd_fs *fs, const struct txd_cred *c, struct node *parent,
		   const char *name, struct txd_entry *e)
{
	struct vote_info vi;

	if (parent->ctl != V_PROPOSALS)
		return -EPERM;
	if (vote_name_check(name))
		return strlen(name) > VOTE_NAME_MAX ? -ENAMETOOLONG : -EINVAL;
	struct unlocked u = drop(fs);
	/* no fs_will_block: the CREATE record is appended, not synced (vote.h
	 * V13), so this worker stays inline */
	int err = vote_create(vsvc(fs), name, c ? c->uid : 0);
	if (!err)
		err = vote_get(vsvc(fs), name, &vi);
	if (!err) /* never opened, it goes after its timeout (V10): the tick learns when */
		svc_kick(fs->svc);
	retake(u);
	return err ? err : ctl_entry(fs, V_PROP, vi.id, e);
}

int ctl_vote_rmdir(struct txd_fs *fs, const struct txd_cred *c, struct node *parent,
		   const char *name)
{
	if (parent->ctl != V_PROPOSALS)
		return ctl_vote_is_dir(parent->ctl) ? -EPERM : -ENOTDIR;
	struct unlocked u = drop(fs);
	fs_will_block(fs);
	int err = vote_remove(vsvc(fs), name, c ? c->uid : 0);
	retake(u);
	return err;
}

/* ---- writes ----------------------------------------------------------------------- */
#define PARTS_MAX (256 * 1024) /* bytes of a participants list: 1,024 names of 255 */

static int act(struct txd_fs *fs, const struct txd_cred *c, struct node *n, const char *buf,
	       size_t size)
{
	struct vote_info vi;
	struct proc_id by;
	char name[VOTE_NAME_MAX + 1];
	uint64_t ns;
	bool yes;
	int vote, err;

	if (n->ctl == V_BALLOT) {
		if ((err = ballot_of(fs, n->ctl_key, &vi, name, &vote)))
			return err;
		if ((err = vote_parse_ballot(buf, size, &yes)))
			return err;
		(void)who(fs, c, &by);
		fs_will_block(fs);
		return vote_cast(vsvc(fs), vi.name, name, yes, &by);
	}
	if ((err = by_id(fs, n->ctl_key, &vi)))
		return err;
	/* timeout and participants do not wait for a sync (V13): inline */
	if (n->ctl == V_TIMEOUT) {
		if (!(err = vote_parse_timeout(buf, size, &ns)) &&
		    !(err = vote_set_timeout(vsvc(fs), vi.name, ns)))
			svc_kick(fs->svc); /* a never-opened one's removal moved (V10) */
		return err;
	}
	(void)who(fs, c, &by);
	return vote_set_participants(vsvc(fs), vi.name, buf, size, &by);
}

/* Keep buf at offset off of acc (a file's bytes by offset). */
static int acc_put(struct ctl_vote_acc *acc, const void *buf, size_t size, uint64_t off)
{
	if (off + size > acc->cap) {
		size_t cap = acc->cap ? acc->cap : 4096;
		while (cap < off + size)
			cap *= 2;
		char *nb = realloc(acc->buf, cap);
		if (!nb)
			return -ENOMEM;
		acc->buf = nb;
		acc->cap = cap;
	}
	if (off > acc->len)
		memset(acc->buf + acc->len, 0, off - acc->len);
	memcpy(acc->buf + off, buf, size);
	if (off + size > acc->len)
		acc->len = off + size;
	return 0;
}

static bool is_sep(char ch)
{
	return ch == ',' || ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

/* Act on the participants list written so far through this open file
 * (acc->pbase..pend). When an earlier part of it acted already, the list
 * that part opened is extended (V15). */
static int parts_act(struct txd_fs *fs, const struct txd_cred *c, struct node *n,
		     struct ctl_vote_acc *acc)
{
	bool more = acc->parts_acted;
	int err = act(fs, c, n, acc->buf + acc->pbase, acc->pend - acc->pbase);

	acc->parts_acted = true;
	if (err == -EEXIST && more) {
		struct vote_info vi;
		if (!(err = by_id(fs, n->ctl_key, &vi)))
			err = vote_extend_participants(vsvc(fs), vi.name, acc->buf + acc->pbase,
						       acc->pend - acc->pbase);
	}
	return err;
}

ssize_t ctl_vote_write(struct txd_fs *fs, const struct txd_cred *c, struct node *n, const void *buf,
		       size_t size, uint64_t off, struct ctl_vote_acc *acc)
{
	int err;

	if (n->ctl == V_PAYLOAD) {
		/* a document: buffered, set at FLUSH (SPEC §3) */
		if (size == 0) /* writes nothing (and acc->buf may be NULL yet) */
			return 0;
		if (off + size > VOTE_PAYLOAD_MAX)
			return acc->err = -EFBIG;
		if ((err = acc_put(acc, buf, size, off)))
			return err;
		acc->dirty = true;
		return (ssize_t)size;
	}
	if (!ctl_vote_writable(n->ctl))
		return -EACCES;
	if (size > PARTS_MAX)
		return -EINVAL; /* a list of at most 1024 names of 255 bytes */
	if (n->ctl != V_PARTS || size == 0)
		return (err = act(fs, c, n, buf, size)) ? err : (ssize_t)size;
	if (off > PARTS_MAX - size)
		return -EINVAL;
	/* participants: each write acts (SPEC §3). One that continues this
	 * open file's earlier writes acts on the list they make together
	 * (vote.h V15: `{ echo alice; echo bob; } > participants`). */
	if ((err = acc_put(acc, buf, size, off)))
		return err;
	if (off == 0 || off != acc->pend) {
		acc->pbase = off;
		acc->parts_acted = false;
	}
	acc->pend = off + size;
	/* A buffer-sized write (a multiple of 4 KiB: stdio, dd and cp write a
	 * long list so, and the rest follows) that ends inside a name waits
	 * for the rest of the name: the next write, or FLUSH. Any other write
	 * acts at once, so its errors reach the writer (SPEC §3). */
	acc->parts_held = size % 4096 == 0 && !is_sep(acc->buf[acc->pend - 1]);
	if (acc->parts_held)
		return (ssize_t)size;
	return (err = parts_act(fs, c, n, acc)) ? err : (ssize_t)size;
}

int ctl_vote_flush(struct txd_fs *fs, const struct txd_cred *c, struct node *n,
		   struct ctl_vote_acc *acc)
{
	struct vote_info vi;
	int err = acc->err;

	if (n->ctl == V_PARTS && acc->parts_held && !err) {
		/* the list's last name, held since its write (above) */
		acc->parts_held = false;
		return parts_act(fs, c, n, acc);
	}
	if (n->ctl != V_PAYLOAD || !acc->dirty || err) {
		acc->err = 0;
		return err;
	}
	acc->dirty = false;
	if ((err = by_id(fs, n->ctl_key, &vi)))
		return err;
	fs_will_block(fs);
	return vote_set_payload(vsvc(fs), vi.name, acc->buf, acc->len);
}

/* ---- rendering --------------------------------------------------------------------- */
static void decision_text(const struct vote_info *vi, char *buf, size_t cap)
{
	if (vi->outcome == VOTE_COMMITTED)
		snprintf(buf, cap, "committed\n");
	else
		snprintf(buf, cap, "aborted %s\n", vi->reason);
}

static const char *state_name(enum vote_state s)
{
	return s == VOTE_CREATED ? "created" : s == VOTE_DECIDED ? "decided" : "open";
}

static void add_time(cJSON *o, const char *name, uint64_t ns)
{
	char t[64];
	if (!ns) {
		cJSON_AddNullToObject(o, name);
		return;
	}
	ev_rfc3339(ns, t, sizeof(t));
	cJSON_AddStringToObject(o, name, t);
}

/* participants: as JSON (arr) or as text, one name a line. */
struct jparts {
	cJSON *arr;
	struct {
		char *p;
		size_t len;
	} text;
};

static int json_part(void *arg, const char *name, int vote)
{
	struct jparts *j = arg;
	if (j->arr) {
		cJSON *p = cJSON_CreateObject();
		if (!p)
			return 0;
		cJSON_AddStringToObject(p, "name", name);
		if (vote < 0)
			cJSON_AddNullToObject(p, "vote");
		else
			cJSON_AddStringToObject(p, "vote", vote ? "yes" : "no");
		cJSON_AddItemToArray(j->arr, p);
		return 0;
	}
	size_t l = strlen(name);
	char *np = realloc(j->text.p, j->text.len + l + 2);
	if (!np)
		return -ENOMEM;
	j->text.p = np;
	memcpy(j->text.p + j->text.len, name, l);
	j->text.p[j->text.len + l] = '\n';
	j->text.len += l + 1;
	return 0;
}

static int info_json(struct txd_fs *fs, const struct vote_info *vi, char **buf, size_t *len)
{
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return -ENOMEM;
	cJSON_AddStringToObject(o, "name", vi->name);
	ev_add_u64(o, "id", vi->id);
	cJSON_AddStringToObject(o, "state", state_name(vi->state));
	ev_add_u64(o, "uid", vi->uid);
	add_time(o, "created", vi->created_ns);
	add_time(o, "opened", vi->opened_ns);
	add_time(o, "deadline", vi->deadline_ns);
	cJSON_AddNumberToObject(o, "timeout", (double)vi->timeout_ns / 1e9);
	ev_add_u64(o, "payload_bytes", vi->payload_len);
	if (vi->fence[0]) { /* vote.h V14: a fenced state replace */
		cJSON *f = cJSON_AddObjectToObject(o, "fence");
		if (f) {
			cJSON_AddStringToObject(f, "lease", vi->fence);
			ev_add_u64(f, "token", vi->fence_token);
		}
	}
	struct jparts j = {.arr = cJSON_AddArrayToObject(o, "participants")};
	(void)vote_list_participants(vsvc(fs), vi->name, json_part, &j);
	if (vi->state == VOTE_DECIDED) {
		cJSON_AddStringToObject(o, "outcome", vote_outcome_name(vi->outcome));
		if (vi->outcome == VOTE_ABORTED)
			cJSON_AddStringToObject(o, "reason", vi->reason);
		add_time(o, "decided", vi->decided_ns);
	} else {
		cJSON_AddNullToObject(o, "outcome");
	}
	char *txt = json_print(o, true);
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

static int payload_of(struct txd_fs *fs, const char *name, char **buf, size_t *len)
{
	size_t n = 0;
	int err = vote_payload(vsvc(fs), name, NULL, 0, &n);
	if (err)
		return err;
	if (!(*buf = malloc(n ? n : 1)))
		return -ENOMEM;
	size_t got = 0;
	if ((err = vote_payload(vsvc(fs), name, *buf, n, &got))) {
		free(*buf);
		return err;
	}
	*len = got < n ? got : n; /* replaced meanwhile: never more than read */
	return 0;
}

int ctl_vote_render(struct txd_fs *fs, struct node *n, char **buf, size_t *len)
{
	struct vote_info vi;
	char name[VOTE_NAME_MAX + 1], text[VOTE_REASON_MAX + 80];
	int vote, err;

	*buf = NULL;
	*len = 0;
	struct unlocked u = drop(fs);
	switch (n->ctl) {
	case V_BALLOT:
		if ((err = ballot_of(fs, n->ctl_key, &vi, name, &vote)))
			break;
		snprintf(text, sizeof(text), "%s", vote < 0 ? "" : vote ? "yes\n" : "no\n");
		goto text;
	case V_IENTRY:
		if ((err = by_id(fs, n->ctl_key & 0xffffffffull, &vi)))
			break;
		err = payload_of(fs, vi.name, buf, len);
		break;
	default:
		if ((err = by_id(fs, n->ctl_key, &vi)))
			break;
		switch (n->ctl) {
		case V_DECISION:
			if (vi.state != VOTE_DECIDED) {
				err = -ENOENT;
				break;
			}
			decision_text(&vi, text, sizeof(text));
			goto text;
		case V_TIMEOUT: {
			uint64_t s = vi.timeout_ns / 1000000000ull,
				 f = vi.timeout_ns % 1000000000ull;
			int k = snprintf(text, sizeof(text), "%" PRIu64 ".%09" PRIu64, s, f);
			while (k > 0 && text[k - 1] == '0')
				text[--k] = 0;
			if (k > 0 && text[k - 1] == '.')
				text[--k] = 0;
			snprintf(text + k, sizeof(text) - (size_t)k, "\n");
			goto text;
		}
		case V_PAYLOAD:
			err = payload_of(fs, vi.name, buf, len);
			break;
		case V_PARTS: {
			struct jparts j = {0};
			if (vi.state != VOTE_CREATED &&
			    (err = vote_list_participants(vsvc(fs), vi.name, json_part, &j)))
				break;
			*buf = j.text.p ? j.text.p : strdup("");
			*len = j.text.len;
			err = *buf ? 0 : -ENOMEM;
			break;
		}
		case V_INFO:
			err = info_json(fs, &vi, buf, len);
			break;
		default:
			err = -EISDIR;
			break;
		}
	}
	retake(u);
	return err;
text:
	retake(u);
	if (!(*buf = strdup(text)))
		return -ENOMEM;
	*len = strlen(text);
	return 0;
}

/* ---- the wait file --------------------------------------------------------- */
/* The vote service's events (svc_set_vote_listener): no lock held. A
 * decision readies the waits of its proposal. */
static void on_vote_event(void *arg, const struct vote_event *ev)
{
	struct ctl_votes *cv = arg;
	struct ctl_wakes wl = {.n = 0};

	if (ev->kind != VEV_DECIDED && ev->kind != VEV_REMOVED)
		return;
	pthread_mutex_lock(&cv->wlock);
	for (struct vwait *w = cv->waits.next; w != &cv->waits; w = w->next) {
		if (w->ready || w->id != ev->id)
			continue;
		if (ev->kind == VEV_REMOVED)
			w->err = -ENOENT; /* never decided, and gone */
		else if (ev->outcome == VOTE_COMMITTED)
			snprintf(w->text, sizeof(w->text), "committed\n");
		else
			snprintf(w->text, sizeof(w->text), "aborted %s\n", ev->reason);
		w->ready = true;
		ctl_waiter_ready(&w->cw, &wl);
	}
	pthread_mutex_unlock(&cv->wlock);
	ctl_wakes_run(&wl);
}

int ctl_vote_wait_open(struct txd_fs *fs, struct node *n, struct vwait **out)
{
	struct ctl_votes *cv = state(fs);
	struct vote_info vi;
	struct vwait *w = cv ? calloc(1, sizeof(*w)) : NULL;

	if (!w)
		return -ENOMEM;
	w->id = n->ctl_key;
	/* registered first, checked after: a decision in between is not lost */
	pthread_mutex_lock(&cv->wlock);
	w->next = &cv->waits;
	w->prev = cv->waits.prev;
	w->prev->next = w;
	cv->waits.prev = w;
	pthread_mutex_unlock(&cv->wlock);
	int err = by_id(fs, w->id, &vi);
	pthread_mutex_lock(&cv->wlock);
	if (!w->ready && !err && vi.state == VOTE_DECIDED) {
		decision_text(&vi, w->text, sizeof(w->text));
		w->ready = true;
	}
	pthread_mutex_unlock(&cv->wlock);
	if (err) {
		ctl_vote_wait_close(fs, w);
		return err;
	}
	*out = w;
	return 0;
}

void ctl_vote_wait_close(struct txd_fs *fs, struct vwait *w)
{
	struct ctl_votes *cv = state(fs);
	struct ctl_wakes wl = {.n = 0};

	pthread_mutex_lock(&cv->wlock);
	w->prev->next = w->next;
	w->next->prev = w->prev;
	ctl_waiter_close(&w->cw, &wl);
	pthread_mutex_unlock(&cv->wlock);
	ctl_wakes_run(&wl);
	free(w);
}

ssize_t ctl_vote_wait_read(struct txd_fs *fs, struct vwait *w, void *buf, size_t size, uint64_t off,
			   bool nonblock, void (*done)(void *arg, int err), void *arg)
{
	struct ctl_votes *cv = state(fs);
	struct vote_info vi;
	ssize_t n;

	pthread_mutex_lock(&cv->wlock);
	if (!w->ready) {
		pthread_mutex_unlock(&cv->wlock);
		/* a never-opened proposal removed after its timeout: no decision
		 * will come */
		if (by_id(fs, w->id, &vi) == -ENOENT)
			return -ENOENT;
		pthread_mutex_lock(&cv->wlock);
	}
	if (!w->ready) {
		n = ctl_waiter_defer(&w->cw, nonblock, done, arg);
		pthread_mutex_unlock(&cv->wlock);
		return n;
	}
	if (w->err) {
		pthread_mutex_unlock(&cv->wlock);
		return w->err;
	}
	size_t len = strlen(w->text);
	n = off >= len ? 0 : (ssize_t)(len - off < size ? len - off : size);
	if (n > 0)
		memcpy(buf, w->text + off, (size_t)n);
	pthread_mutex_unlock(&cv->wlock);
	return n;
}

int ctl_vote_wait_cancel(struct txd_fs *fs, void *arg)
{
	struct ctl_votes *cv = svc_vote_listener_arg(fs->svc);
	int err = -ENOENT;

	if (!cv)
		return err;
	pthread_mutex_lock(&cv->wlock);
	for (struct vwait *w = cv->waits.next; w != &cv->waits && err; w = w->next)
		if (ctl_waiter_cancel(&w->cw, arg))
			err = 0;
	pthread_mutex_unlock(&cv->wlock);
	return err;
}

int ctl_vote_wait_poll(struct txd_fs *fs, struct vwait *w, void (*wake)(void *arg), void *arg)
{
	struct ctl_votes *cv = state(fs);
	struct ctl_wakes wl = {.n = 0};
	int ready;

	pthread_mutex_lock(&cv->wlock);
	ready = w->ready;
	if (!ready && wake)
		ctl_waiter_poll(&w->cw, wake, arg, &wl);
	pthread_mutex_unlock(&cv->wlock);
	ctl_wakes_run(&wl);
	return ready;
}
