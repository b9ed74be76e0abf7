/*
 * ctl_state.c — `.txdir/state/` (ctl_state.h).
 */
#include "ctl_state.h"
#include "ctl_wait.h"
#include "json.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core.h"
#include "ctl.h"
#include "ctl_lease.h" /* ctl_entry, ctl_fill (ctl.c) */
#include "events.h"
#include "lease.h"
#include "state.h"
#include "svc.h"

enum {
	S_DIR = CTL_STATE_FIRST,
	S_DOC,
	S_UPDATE,
	S_CHANGED,
	S_INFO,
	S_TEMP,         /* key: the temp file's id */
	S_PARTS,        /* participants */
	S_END
};

static const struct {
	const char *name;
	unsigned kind;
} files[] = {
	{ "changed", S_CHANGED },
	{ "global_state.json", S_DOC },
	{ "info.json", S_INFO },
	{ "participants", S_PARTS },
	{ "update", S_UPDATE },
};
#define NFILES (sizeof(files) / sizeof(files[0]))

/* update's envelope around a document of STATE_DOC_MAX bytes */
#define UPDATE_MAX (STATE_DOC_MAX + 4096)
#define STATE_TEMP_MAX 16 /* temp files per uid by default (-o max_state_temps=, txd_opts;
			   * root is not limited): EDQUOT */

/* A temp file beside the document (volatile: memory only). tlock. */
struct stemp {
	struct stemp *next;
	uint64_t id;
	uint32_t uid, gid;
	mode_t mode;
	char *buf;
	size_t len, cap;
	char name[];
};

/* An open file of state/: the bytes written since the last act (document
 * files), or a wait (changed). */
struct sfile {
	struct sfile *next, *prev;  /* waits only, under wlock */
	unsigned kind;
	pthread_mutex_t lock;       /* the buffer: writes and flushes may race */
	char *buf;
	size_t len, cap;
	bool dirty;                 /* written since the last act */
	int write_err;              /* a write failed (the limit, or acting at a write):
	                             * FLUSH says it too, as the kernel may have turned
	                             * it into a short count the writer ignored */
	uint64_t temp;              /* S_TEMP: its id */
	uint64_t version;           /* changed: the version at open */
	bool ready;
	uint64_t result;            /* changed: the new version */
	uint64_t ticket;            /* update: a proposal opened at a write */
	size_t plen;                /* participants: the list's bytes in buf ... */
	uint64_t pend;              /* ... written up to this offset */
	struct ctl_waiter cw;       /* changed: its reader's deferred read and poll */
};

struct ctl_states {
	pthread_mutex_t wlock;      /* the waits (leaf) */
	struct sfile waits;         /* list head */
	pthread_mutex_t tlock;      /* the temp files (leaf) */
	struct stemp *temps;
	uint64_t next_temp;
};

static void on_state_event(void *arg, const struct state_event *ev);

static struct ctl_states *cstate(struct txd_fs *fs)
{
	if (!fs->ctl_states && (fs->ctl_states = calloc(1, sizeof(*fs->ctl_states)))) {
		struct ctl_states *cs = fs->ctl_states;
		fs->upper_free = ctl_upper_free;
		pthread_mutex_init(&cs->wlock, NULL);
		pthread_mutex_init(&cs->tlock, NULL);
		cs->waits.next = cs->waits.prev = &cs->waits;
		svc_set_state_listener(fs->svc, on_state_event, cs);
	}
	return fs->ctl_states;
}

void ctl_state_free(struct txd_fs *fs)
{
	struct ctl_states *cs = fs->ctl_states;

	if (!cs)
		return;
	/* the services are closed already (fs_free): no listener call after */
	while (cs->temps) {
		struct stemp *t = cs->temps;
		cs->temps = t->next;
		free(t->buf);
		free(t);
	}
	pthread_mutex_destroy(&cs->tlock);
	pthread_mutex_destroy(&cs->wlock);
	free(cs);
	fs->ctl_states = NULL;
}

static struct state_svc *ssvc(struct txd_fs *fs)
{
	return svc_state(fs->svc);
}

/* ---- nodes --------------------------------------------------------------------- */
bool ctl_state_owns(unsigned kind)
{
	return kind >= CTL_STATE_FIRST && kind < S_END;
}

bool ctl_state_is_dir(unsigned kind)
{
	return kind == S_DIR;
}

unsigned ctl_state_root_kind(void)
{
	return S_DIR;
}

bool ctl_state_fixed_file(unsigned kind)
{
	return kind > S_DIR && kind < S_END && kind != S_TEMP;
}

bool ctl_state_versioned(unsigned kind)
{
	return kind == S_DOC;
}

bool ctl_state_writable(unsigned kind)
{
	return kind == S_DOC || kind == S_UPDATE || kind == S_TEMP || kind == S_PARTS;
}

/* ---- temp files (tlock held) ---------------------------------------------------- */
static struct stemp *temp_by_name(struct ctl_states *cs, const char *name)
{
	for (struct stemp *t = cs->temps; t; t = t->next)
		if (strcmp(t->name, name) == 0)
			return t;
	return NULL;
}

static struct stemp *temp_by_id(struct ctl_states *cs, uint64_t id)
{
	for (struct stemp *t = cs->temps; t; t = t->next)
		if (t->id == id)
			return t;
	return NULL;
}

static void temp_remove(struct ctl_states *cs, struct stemp *t)
{
	struct stemp **pp = &cs->temps;

	while (*pp != t)
		pp = &(*pp)->next;
	*pp = t->next;
	free(t->buf);
	free(t);
}

/* Bytes [len, size) are zeros; -EFBIG over STATE_DOC_MAX. */
static int temp_resize(struct stemp *t, size_t size)
{
	if (size > STATE_DOC_MAX)
		return -EFBIG;
	if (size > t->cap) {
		size_t cap = t->cap ? t->cap : 4096;
		while (cap < size)
			cap *= 2;
		char *nb = realloc(t->buf, cap);
		if (!nb)
			return -ENOMEM;
		t->buf = nb;
		t->cap = cap;
	}
	if (size > t->len)
		memset(t->buf + t->len, 0, size - t->len);
	t->len = size;
	return 0;
}

static bool fixed_name(const char *name)
{
	for (size_t k = 0; k < NFILES; k++)
		if (strcmp(name, files[k].name) == 0)
			return true;
	return false;
}

/* The caller may remove or rename t: its owner or root (the directory is
 * 0777 without the sticky bit, so the kernel leaves this to us). */
static bool temp_may(const struct txd_cred *c, const struct stemp *t)
{
	return !c || c->uid == 0 || c->uid == t->uid;
}

/* The node key of a fixed file: the document's is its version, so each
 * version has its own node id (SPEC §3: an open file keeps the bytes and
 * the user.txdir.version of the version it opened; state.h S12). */
static uint64_t file_key(struct txd_fs *fs, unsigned kind)
{
	return kind == S_DOC ? state_version(ssvc(fs)) : 0;
}

int ctl_state_lookup(struct txd_fs *fs, struct node *parent, const char *name,
		     struct txd_entry *e)
{
	if (parent->ctl != S_DIR)
		return -ENOTDIR;
	for (size_t k = 0; k < NFILES; k++)
		if (strcmp(name, files[k].name) == 0)
			return ctl_entry(fs, files[k].kind, file_key(fs, files[k].kind), e);
	struct ctl_states *cs = cstate(fs);
	uint64_t id = 0;
	if (cs) {
		pthread_mutex_lock(&cs->tlock);
		struct stemp *t = temp_by_name(cs, name);
		id = t ? t->id : 0;
		pthread_mutex_unlock(&cs->tlock);
	}
	return id ? ctl_entry(fs, S_TEMP, id, e) : -ENOENT;
}

int ctl_state_getattr(struct txd_fs *fs, struct node *n, struct txd_attr *a)
{
	if (n->ctl == S_TEMP) {
		struct ctl_states *cs = cstate(fs);
		int err = -ENOENT;
		if (!cs)
			return -ENOMEM;
		pthread_mutex_lock(&cs->tlock);
		struct stemp *t = temp_by_id(cs, n->ctl_key);
		if (t) {
			a->mode = S_IFREG | t->mode;
			a->uid = t->uid;
			a->gid = t->gid;
			a->nlink = 1;
			a->size = t->len;
			err = 0;
		}
		pthread_mutex_unlock(&cs->tlock);
		return err;
	}
	if (n->ctl == S_DIR) {
		/* anyone may make a temp file here (not sticky: rename over
		 * the document must work for every uid; temp_may) */
		a->mode = S_IFDIR | 0777;
		a->nlink = 2;
		a->size = 4096;
		return 0;
	}
	/* anyone may replace the document (SPEC §5; root-only would need a
	 * policy the SPEC does not state); size 0 as every control file */
	a->mode = S_IFREG | (n->ctl == S_DOC || n->ctl == S_PARTS ? 0666 :
			     n->ctl == S_UPDATE ? 0222 : 0444);
	a->nlink = 1;
	return 0;
}

int ctl_state_readdir(struct txd_fs *fs, struct node *n, uint64_t off, bool plus,
		      txd_fill_fn fill, void *arg)
{
	if (n->ctl != S_DIR)
		return -ENOTDIR;
	for (uint64_t k = off < 3 ? 0 : off - 2; k < NFILES; k++)
		if (ctl_fill(fs, files[k].name, files[k].kind, file_key(fs, files[k].kind), plus,
			     k + 3, fill, arg))
			return 0;
	/* then the temp files: offset 3 + NFILES + k is the k-th */
	struct ctl_states *cs = cstate(fs);
	struct {
		uint64_t id;
		char name[TXD_NAME_MAX + 1];
	} *v = NULL;
	size_t nt = 0, cap = 0;
	if (!cs)
		return -ENOMEM;
	pthread_mutex_lock(&cs->tlock);
	for (struct stemp *t = cs->temps; t; t = t->next) {
		if (nt == cap) {
			cap = cap ? 2 * cap : 16;
			void *nv = realloc(v, cap * sizeof(*v));
			if (!nv)
				break;
			v = nv;
		}
		v[nt].id = t->id;
		snprintf(v[nt++].name, sizeof(v->name), "%s", t->name);
	}
	pthread_mutex_unlock(&cs->tlock);
	for (uint64_t k = off < 3 + NFILES ? 0 : off - 2 - NFILES; k < nt; k++)
		if (ctl_fill(fs, v[k].name, S_TEMP, v[k].id, plus, k + 3 + NFILES, fill, arg))
			break;
	free(v);
	return 0;
}

int ctl_state_create(struct txd_fs *fs, const struct txd_cred *c, struct node *parent,
		     const char *name, mode_t mode, struct txd_entry *e)
{
	struct ctl_states *cs = cstate(fs);
	size_t len = strlen(name), mine = 0;
	uint32_t uid = c ? c->uid : 0;
	struct stemp *t;

	if (parent->ctl != S_DIR)
		return -EPERM;
	if (len == 0 || len > TXD_NAME_MAX)
		return len ? -ENAMETOOLONG : -EINVAL;
	if (strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
		return -EINVAL;
	if (fixed_name(name))
		return -EEXIST;
	if (!cs)
		return -ENOMEM;
	pthread_mutex_lock(&cs->tlock);
	for (t = cs->temps; t; t = t->next)
		mine += t->uid == uid;
	if (temp_by_name(cs, name)) {
		pthread_mutex_unlock(&cs->tlock);
		return -EEXIST;
	}
	if (uid != 0 && mine >= (fs->opts.max_state_temps ? fs->opts.max_state_temps
							    : STATE_TEMP_MAX)) {
		pthread_mutex_unlock(&cs->tlock);
		return -EDQUOT;
	}
	t = calloc(1, sizeof(*t) + len + 1);
	if (!t) {
		pthread_mutex_unlock(&cs->tlock);
		return -ENOMEM;
	}
	memcpy(t->name, name, len + 1);
	t->id = ++cs->next_temp;
	t->uid = uid;
	t->gid = c ? c->gid : 0;
	t->mode = (mode & 0666 & ~(c ? c->umask : 022)) | 0600;
	t->next = cs->temps;
	cs->temps = t;
	uint64_t id = t->id;
	pthread_mutex_unlock(&cs->tlock);
	return ctl_entry(fs, S_TEMP, id, e);
}

int ctl_state_unlink(struct txd_fs *fs, const struct txd_cred *c, struct node *parent,
		     const char *name)
{
	struct ctl_states *cs = cstate(fs);
	int err = -ENOENT;

	if (parent->ctl != S_DIR)
		return -ENOTDIR;
	if (fixed_name(name))
		return -EPERM;
	if (!cs)
		return -ENOMEM;
	pthread_mutex_lock(&cs->tlock);
	struct stemp *t = temp_by_name(cs, name);
	if (t && !temp_may(c, t))
		err = -EPERM;
	else if (t) {
		temp_remove(cs, t);
		err = 0;
	}
	pthread_mutex_unlock(&cs->tlock);
	return err;
}

int ctl_state_truncate(struct txd_fs *fs, struct node *n, uint64_t size)
{
	struct ctl_states *cs = cstate(fs);
	int err = -ENOENT;

	if (n->ctl != S_TEMP)
		return 0; /* the document: `> global_state.json` truncates nothing */
	if (!cs)
		return -ENOMEM;
	pthread_mutex_lock(&cs->tlock);
	struct stemp *t = temp_by_id(cs, n->ctl_key);
	if (t)
		err = size > STATE_DOC_MAX ? -EFBIG : temp_resize(t, (size_t)size);
	pthread_mutex_unlock(&cs->tlock);
	return err;
}

static char *render_info(struct txd_fs *fs)
{
	struct state_event in;
	cJSON *o = cJSON_CreateObject();
	char when[40], *txt;

	state_info(ssvc(fs), &in);
	ev_add_u64(o, "version", in.version);
	ev_add_u64(o, "bytes", in.bytes);
	if (in.time_ns) {
		ev_rfc3339(in.time_ns, when, sizeof(when));
		cJSON_AddStringToObject(o, "updated", when);
	} else {
		cJSON_AddNullToObject(o, "updated");
	}
	ev_add_u64(o, "pid", in.by.pid);
	ev_add_u64(o, "uid", in.by.uid);
	char pname[256], *parts = state_participants(ssvc(fs));
	cJSON_AddStringToObject(o, "participants", parts ? parts : "");
	free(parts);
	if (state_pending(ssvc(fs), pname, sizeof(pname)))
		cJSON_AddStringToObject(o, "proposal", pname);
	else
		cJSON_AddNullToObject(o, "proposal");
	txt = json_print(o, true);
	cJSON_Delete(o);
	return txt;
}

int ctl_state_open(struct txd_fs *fs, const struct txd_cred *c, struct node *n, int flags,
		   struct sfile **out, char **buf, size_t *len)
{
	struct ctl_states *cs = cstate(fs);
	struct sfile *f = calloc(1, sizeof(*f));
	int err = 0;

	if (!f || !cs) {
		free(f);
		return -ENOMEM;
	}
	f->kind = n->ctl;
	pthread_mutex_init(&f->lock, NULL);
	*buf = NULL;
	*len = 0;
	if (n->ctl == S_DOC && (flags & O_ACCMODE) != O_WRONLY) {
		/* this node's version; -ESTALE when it is long gone: the
		 * kernel looks the name up again and opens the new node */
		err = state_get_at(ssvc(fs), n->ctl_key, buf, len);
	} else if (n->ctl == S_TEMP) {
		/* a plain file: O_TRUNC truncates at open, a read sees the bytes
		 * as of open */
		pthread_mutex_lock(&cs->tlock);
		struct stemp *t = temp_by_id(cs, n->ctl_key);
		f->temp = n->ctl_key;
		if (!t)
			err = -ENOENT;
		else if (c && c->uid != 0 && c->uid != t->uid)
			err = -EACCES;
		else if ((flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY)
			t->len = 0;
		if (!err && (flags & O_ACCMODE) != O_WRONLY && t->len) {
			if ((*buf = malloc(t->len))) {
				memcpy(*buf, t->buf, t->len);
				*len = t->len;
			} else {
				err = -ENOMEM;
			}
		}
		pthread_mutex_unlock(&cs->tlock);
	} else if (n->ctl == S_PARTS) {
		char *p = state_participants(ssvc(fs));
		size_t pl = p ? strlen(p) : 0;
		if (p && pl && (flags & O_ACCMODE) != O_WRONLY) {
			p[pl] = '\n'; /* strdup'd with room: strlen + 1 */
			*buf = p;
			*len = pl + 1;
		} else {
			free(p);
			err = p ? 0 : -ENOMEM;
		}
		/* `: > participants`: plain mode again, at close */
		f->dirty = (flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY;
	} else if (n->ctl == S_INFO) {
		*buf = render_info(fs);
		*len = *buf ? strlen(*buf) : 0;
		err = *buf ? 0 : -ENOMEM;
	} else if (n->ctl == S_CHANGED) {
		/* registered first, checked after: a replace in between is not lost */
		pthread_mutex_lock(&cs->wlock);
		f->version = state_version(ssvc(fs));
		f->next = &cs->waits;
		f->prev = cs->waits.prev;
		f->prev->next = f;
		cs->waits.prev = f;
		pthread_mutex_unlock(&cs->wlock);
	}
	if (err) {
		ctl_state_release(fs, f);
		return err;
	}
	*out = f;
	return 0;
}

/* ---- xattrs ---------------------------------------------------------------------- */
#define XATTR_VERSION "user.txdir.version" /* as a data file's (fsops.c) */

ssize_t ctl_state_getxattr(struct txd_fs *fs, struct node *n, const char *name, void *buf,
			   size_t size)
{
	char v[24];
	int len;

	(void)fs;
	if (n->ctl != S_DOC || strcmp(name, XATTR_VERSION) != 0)
		return -ENODATA;
	len = snprintf(v, sizeof(v), "%" PRIu64, n->ctl_key); /* the node's version */
	if (size == 0)
		return len;
	if (size < (size_t)len)
		return -ERANGE;
	memcpy(buf, v, (size_t)len);
	return len;
}

ssize_t ctl_state_listxattr(struct txd_fs *fs, struct node *n, char *buf, size_t size)
{
	/* readable by name, never listed: as a data file's user.txdir.*
	 * (fsops.c), so cp -a and rsync -X do not try to copy it */
	(void)fs;
	(void)n;
	(void)buf;
	(void)size;
	return 0;
}

/* ---- replacing ------------------------------------------------------------------- */
struct fence {
	struct txd_fs *fs;
	char name[LEASE_NAME_MAX + 1];
	uint64_t token;
};

/* state.h S11, under the state lock: lease_get only reads. */
static int fence_check(void *arg)
{
	struct fence *fe = arg;
	struct lease_info li;
	struct lease_svc *ls = fe->fs->svc ? svc_lease(fe->fs->svc) : NULL;

	if (!ls || lease_get(ls, fe->name, &li) || li.token != fe->token)
		return -ESTALE;
	return 0;
}

/* Replace (state_submit). wait: a participants-mode replace waits for its
 * outcome here (0 committed, ECANCELED aborted); else *ticket (may be
 * NULL) gets its ticket and the caller returns at once. */
static int replace(struct txd_fs *fs, const struct txd_cred *c, const char *doc, size_t len,
		   uint64_t if_version, const struct fence *fe, bool wait, uint64_t *ticket)
{
	struct state_who by = { .pid = c ? (uint32_t)fs_process_of(fs, c->pid) : 0,
			.uid = c ? c->uid : 0 };
	struct state_fence sf = { .check = fence_check, .arg = (void *)fe,
				  .lease = fe ? fe->name : NULL, .token = fe ? fe->token : 0 };
	struct state_result r;
	int err;

	fs_will_block(fs); /* the replace waits for the WAL's sync, or a vote */
	err = state_submit(ssvc(fs), doc, len, if_version, &by, fe ? &sf : NULL, STATE_NOWAIT, &r);
	if (!err && r.ticket && wait)
		err = state_wait(ssvc(fs), r.ticket, NULL);
	else if (!err && ticket)
		*ticket = r.ticket;
	return err;
}

/* if_lease's value: {"name": N, "token": T}; 0, else -EINVAL. */
static int parse_fence(const cJSON *l, struct fence *fe)
{
	const cJSON *n = cJSON_GetObjectItemCaseSensitive(l, "name");
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(l, "token");

	if (!cJSON_IsObject(l) || cJSON_GetArraySize(l) != 2 || !cJSON_IsString(n) ||
	    !cJSON_IsNumber(t) || t->valuedouble < 0 || t->valuedouble > 9007199254740992.0 ||
	    t->valuedouble != floor(t->valuedouble) || lease_name_check(n->valuestring))
		return -EINVAL; /* a malformed name is EINVAL, never "lost the lease" */
	snprintf(fe->name, sizeof(fe->name), "%s", n->valuestring);
	fe->token = (uint64_t)t->valuedouble;
	return 0;
}

/* update's envelope: 0 and *doc (malloc'd), *if_version, *fenced and *fe
 * (if_lease); -EINVAL. */
/* Past the JSON value at b[k] (valid JSON: state_check_json). */
static size_t skip_value(const char *b, size_t len, size_t k)
{
	int depth = 0;

	do {
		if (b[k] == '"') {
			for (k++; k < len && b[k] != '"'; k++)
				if (b[k] == '\\')
					k++;
			k++;
		} else if (b[k] == '{' || b[k] == '[') {
			depth++;
			k++;
		} else if (b[k] == '}' || b[k] == ']') {
			depth--;
			k++;
		} else if (depth > 0) {
			k++;
		} else { /* a number, true, false, null */
			while (k < len && !strchr(",}] \t\r\n", b[k]))
				k++;
		}
	} while (k < len && depth > 0);
	return k;
}

/* The bytes of top-level member name of the JSON object b (valid JSON),
 * when its key is written without escapes: 0, else -ENOENT. */
static int raw_member(const char *b, size_t len, const char *name, const char **val,
		      size_t *vlen)
{
	size_t k = 0, nl = strlen(name);

#define WS() while (k < len && strchr(" \t\r\n", b[k]) && b[k]) k++
	WS();
	if (k >= len || b[k++] != '{')
		return -ENOENT;
	for (;;) {
		WS();
		if (k >= len || b[k] != '"')
			return -ENOENT;
		size_t ks = k + 1, ke = skip_value(b, len, k) - 1; /* the key's quotes */
		k = ke + 1;
		WS();
		if (k >= len || b[k++] != ':')
			return -ENOENT;
		WS();
		size_t vs = k;
		k = skip_value(b, len, k);
		if (ke - ks == nl && !memcmp(b + ks, name, nl)) {
			*val = b + vs;
			*vlen = k - vs;
			return 0;
		}
		WS();
		if (k >= len || b[k++] != ',')
			return -ENOENT;
	}
#undef WS
}

static int parse_update(const char *b, size_t len, char **doc, uint64_t *if_version,
			bool *fenced, struct fence *fe)
{
	cJSON *o, *it;
	const cJSON *v = NULL, *d = NULL, *l = NULL;
	int err = state_check_json(b, len);

	if (err)
		return err;
	o = json_parse(b, len);
	if (!cJSON_IsObject(o))
		err = -EINVAL;
	cJSON_ArrayForEach(it, o) {
		if (!err && strcmp(it->string, "if_version") == 0 && !v)
			v = it;
		else if (!err && strcmp(it->string, "document") == 0 && !d)
			d = it;
		else if (!err && strcmp(it->string, "if_lease") == 0 && !l)
			l = it;
		else
			err = -EINVAL; /* anything else: never ignored */
	}
	if (!err && (!v || !d || !cJSON_IsNumber(v) || v->valuedouble < 0 ||
		     v->valuedouble > 9007199254740992.0 ||
		     v->valuedouble != floor(v->valuedouble)))
		err = -EINVAL;
	*fenced = l != NULL;
	if (!err && l)
		err = parse_fence(l, fe);
	if (!err) {
		/* the document's own bytes (numbers, key order and spacing as
		 * written, as a plain write keeps them); cJSON's rendering only
		 * if "document" was spelt with escapes */
		const char *raw = NULL;
		size_t rl = 0;
		char *p = raw_member(b, len, "document", &raw, &rl) ? json_print(d, false)
								    : strndup(raw, rl);
		size_t n = p ? strlen(p) : 0;
		char *nl = p ? realloc(p, n + 2) : NULL;
		if (!nl) {
			free(p);
			err = -ENOMEM;
		} else {
			memcpy(nl + n, "\n", 2);
			*doc = nl;
			*if_version = (uint64_t)v->valuedouble;
		}
	}
	cJSON_Delete(o);
	return err;
}

/* Act on f's buffer (f->lock held). A participants-mode replace opens its
 * proposal and leaves its ticket in f->ticket: at a write (update), the
 * close waits for it; at a FLUSH, the FLUSH does (ctl_state_flush_async). */
static int act(struct txd_fs *fs, const struct txd_cred *c, struct sfile *f)
{
	char *doc = NULL;
	uint64_t if_version = STATE_ANY;
	struct fence fe = { .fs = fs };
	bool fenced = false;
	int err;

	f->dirty = false;
	if (f->kind == S_PARTS) {
		struct state_who by = { .pid = c ? (uint32_t)fs_process_of(fs, c->pid) : 0,
				.uid = c ? c->uid : 0 };
		fs_will_block(fs);
		err = state_set_participants(ssvc(fs), f->buf ? f->buf : "", f->len, &by);
	} else if (f->kind == S_DOC) {
		err = replace(fs, c, f->buf ? f->buf : "", f->len, STATE_ANY, NULL, false, &f->ticket);
	} else {
		err = parse_update(f->buf ? f->buf : "", f->len, &doc, &if_version, &fenced, &fe);
		if (!err)
			err = replace(fs, c, doc, strlen(doc), if_version, fenced ? &fe : NULL,
				      false, &f->ticket);
		free(doc);
	}
	f->len = 0; /* the next writes start a new document */
	return err;
}

/* A temp file's bytes change at each write (it is a file, not a document
 * yet: the rename over global_state.json is what acts). */
static ssize_t temp_write(struct txd_fs *fs, struct sfile *f, const void *buf, size_t size,
			  uint64_t off)
{
	struct ctl_states *cs = fs->ctl_states;
	int err = -ENOENT;

	if (off > STATE_DOC_MAX || size > STATE_DOC_MAX - off)
		return -EFBIG;
	pthread_mutex_lock(&cs->tlock);
	struct stemp *t = temp_by_id(cs, f->temp);
	if (t)
		err = off + size > t->len ? temp_resize(t, off + size) : 0;
	if (!err && size) /* t->buf may be NULL while the file is empty */
		memcpy(t->buf + off, buf, size);
	pthread_mutex_unlock(&cs->tlock);
	return err ? err : (ssize_t)size;
}

/* Is the buffer one complete JSON object already (update acts at once)? */
static bool complete_object(const struct sfile *f)
{
	size_t k = 0, e = f->len;

	while (k < e && strchr(" \t\r\n", f->buf[k]))
		k++;
	while (e > k && strchr(" \t\r\n", f->buf[e - 1]))
		e--;
	/* parse only what could be whole: '{' ... '}' (a document written in
	 * many writes is not parsed at each one) */
	return e - k >= 2 && f->buf[k] == '{' && f->buf[e - 1] == '}' &&
	       state_check_json(f->buf, f->len) == 0;
}

ssize_t ctl_state_write(struct txd_fs *fs, const struct txd_cred *c, struct sfile *f,
			const void *buf, size_t size, uint64_t off)
{
	size_t max = f->kind == S_DOC ? STATE_DOC_MAX : UPDATE_MAX;
	int err = 0;

	if (!ctl_state_writable(f->kind))
		return -EACCES;
	if (f->kind == S_TEMP)
		return temp_write(fs, f, buf, size, off);
	if (off > max || size > max - off) {
		/* the kernel splits a big write(2): the writer may see only a
		 * short count, so its close must say it too (nothing applies) */
		pthread_mutex_lock(&f->lock);
		f->write_err = -EFBIG;
		f->dirty = false;
		pthread_mutex_unlock(&f->lock);
		return -EFBIG;
	}
	if (size == 0) /* writes nothing (and f->buf may be NULL yet) */
		return 0;
	pthread_mutex_lock(&f->lock);
	if (off + size > f->cap) {
		size_t cap = f->cap ? f->cap : 4096;
		while (cap < off + size)
			cap *= 2;
		char *nb = realloc(f->buf, cap);
		if (!nb) {
			err = -ENOMEM;
			goto out_unlock;
		}
		f->buf = nb;
		f->cap = cap;
	}
	if (f->kind == S_PARTS) {
		/* a one-word control file: each write acts (SPEC §3); one that
		 * continues this open file's earlier writes acts on the list
		 * they make together (`{ echo alice; echo bob; } >`) */
		size_t keep = off && off == f->pend ? f->plen : 0; /* <= off: fits */
		memcpy(f->buf + keep, buf, size);
		f->len = f->plen = keep + size;
		f->pend = off + size;
		f->dirty = true;
		err = act(fs, c, f);
		goto out_unlock;
	}
	if (off > f->len)
		memset(f->buf + f->len, 0, off - f->len); /* a hole: NULs, not JSON */
	memcpy(f->buf + off, buf, size);
	if (off + size > f->len)
		f->len = off + size;
	f->dirty = true;
	if (f->kind == S_UPDATE && complete_object(f)) {
		err = act(fs, c, f);
		if (err)
			f->write_err = err;
	}
out_unlock:
	pthread_mutex_unlock(&f->lock);
	return err ? err : (ssize_t)size;
}

int ctl_state_flush_async(struct txd_fs *fs, const struct txd_cred *c, struct sfile *f,
			  void (*done)(void *arg, int err), void *arg)
{
	int err = 0;

	if (f->kind != S_DOC && f->kind != S_UPDATE && f->kind != S_PARTS)
		return 0; /* a temp file holds its bytes already */
	pthread_mutex_lock(&f->lock);
	if (f->write_err) {
		err = f->write_err;
		f->write_err = 0;
		f->dirty = false;
		f->len = 0; /* the next writes start a new document */
	} else if (f->dirty) {
		err = act(fs, c, f);
	}
	if (!err && f->ticket) {
		/* a participants-mode replace: the FLUSH gives its outcome */
		uint64_t t = f->ticket;
		f->ticket = 0;
		if (done) {
			err = state_wait_async(ssvc(fs), t, done, arg);
		} else {
			fs_will_block(fs);
			err = state_wait(ssvc(fs), t, NULL);
		}
	}
	pthread_mutex_unlock(&f->lock);
	return err;
}

int ctl_state_flush(struct txd_fs *fs, const struct txd_cred *c, struct sfile *f)
{
	return ctl_state_flush_async(fs, c, f, NULL, NULL);
}

int ctl_state_flush_cancel(struct txd_fs *fs, void *arg)
{
	return state_wait_cancel(ssvc(fs), arg);
}

/* ---- rename ------------------------------------------------------------------------ */
/* A temp file renamed over global_state.json: its bytes replace the
 * document (state_replace: EINVAL/EFBIG and the old document stays, and
 * so does the temp file); then the temp file is gone. fs->lock is
 * released around the replace (it waits for the WAL's sync). */
static int rename_over_doc(struct txd_fs *fs, const struct txd_cred *c, struct ctl_states *cs,
			   struct stemp *t)
{
	uint64_t id = t->id;
	size_t len = t->len;
	char *doc = malloc(len ? len : 1);
	int err;

	if (!doc) {
		pthread_mutex_unlock(&cs->tlock);
		return -ENOMEM;
	}
	memcpy(doc, t->buf, len);
	pthread_mutex_unlock(&cs->tlock);
	pthread_mutex_unlock(&fs->lock);
	err = replace(fs, c, doc, len, STATE_ANY, NULL, false, NULL); /* never waits */
	free(doc);
	pthread_mutex_lock(&fs->lock);
	if (!err) {
		pthread_mutex_lock(&cs->tlock);
		if ((t = temp_by_id(cs, id)))
			temp_remove(cs, t);
		pthread_mutex_unlock(&cs->tlock);
	}
	return err;
}

int ctl_state_rename(struct txd_fs *fs, const struct txd_cred *c, struct node *parent,
		     const char *name, struct node *newparent, const char *newname,
		     unsigned flags)
{
	struct ctl_states *cs = cstate(fs);
	struct stemp *t, *dst;
	size_t nlen = strlen(newname);

	if (parent->ctl != S_DIR || newparent->ctl != S_DIR)
		return -EXDEV; /* only within state/ */
	if (flags & ~RENAME_NOREPLACE)
		return -EINVAL; /* RENAME_EXCHANGE: nothing to exchange with */
	if (fixed_name(name))
		return -EPERM;  /* the document and its files stay */
	if (nlen == 0 || nlen > TXD_NAME_MAX || strchr(newname, '/'))
		return nlen > TXD_NAME_MAX ? -ENAMETOOLONG : -EINVAL;
	if (!cs)
		return -ENOMEM;
	pthread_mutex_lock(&cs->tlock);
	t = temp_by_name(cs, name);
	int err = !t ? -ENOENT : !temp_may(c, t) ? -EPERM : 0;
	if (!err && strcmp(name, newname) == 0)
		err = -EEXIST; /* rename to itself: nothing to do */
	if (!err && fixed_name(newname)) {
		if (flags & RENAME_NOREPLACE)
			err = -EEXIST;
		else if (strcmp(newname, "global_state.json") != 0)
			err = -EPERM;
		else
			return rename_over_doc(fs, c, cs, t); /* unlocks tlock */
	}
	if (!err && (dst = temp_by_name(cs, newname))) {
		if (flags & RENAME_NOREPLACE)
			err = -EEXIST;
		else if (!temp_may(c, dst))
			err = -EPERM;
		else
			temp_remove(cs, dst);
	}
	if (!err) {
		/* off the list while realloc may move it, then back at the head */
		struct stemp **pp = &cs->temps, *nt;
		while (*pp != t)
			pp = &(*pp)->next;
		*pp = t->next;
		if ((nt = realloc(t, sizeof(*t) + nlen + 1)))
			memcpy(nt->name, newname, nlen + 1);
		else
			nt = t, err = -ENOMEM;
		nt->next = cs->temps;
		cs->temps = nt;
	}
	pthread_mutex_unlock(&cs->tlock);
	return err == -EEXIST && strcmp(name, newname) == 0 ? 0 : err;
}

/* ---- changed: the wait ---------------------------------------------------------- */
bool ctl_state_is_wait(const struct sfile *f)
{
	return f && f->kind == S_CHANGED;
}

static void on_state_event(void *arg, const struct state_event *ev)
{
	struct ctl_states *cs = arg;
	struct ctl_wakes wl = {.n = 0};

	pthread_mutex_lock(&cs->wlock);
	for (struct sfile *f = cs->waits.next; f != &cs->waits; f = f->next) {
		if (f->ready || ev->version == f->version)
			continue;
		f->ready = true;
		f->result = ev->version;
		ctl_waiter_ready(&f->cw, &wl);
	}
	pthread_mutex_unlock(&cs->wlock);
	ctl_wakes_run(&wl);
}

/* f not ready yet: did the version move since open (a replace that became
 * visible between the version read and the registration)? wlock held. */
static void check_moved(struct txd_fs *fs, struct sfile *f)
{
	uint64_t now = state_version(ssvc(fs));

	if (!f->ready && now != f->version) {
		f->ready = true;
		f->result = now;
	}
}

ssize_t ctl_state_wait_read(struct txd_fs *fs, struct sfile *f, void *buf, size_t size,
			    uint64_t off, bool nonblock, void (*done)(void *arg, int err),
			    void *arg)
{
	struct ctl_states *cs = fs->ctl_states;
	char text[32];
	ssize_t n;

	pthread_mutex_lock(&cs->wlock);
	check_moved(fs, f);
	if (!f->ready) {
		n = ctl_waiter_defer(&f->cw, nonblock, done, arg);
		pthread_mutex_unlock(&cs->wlock);
		return n;
	}
	snprintf(text, sizeof(text), "%" PRIu64 "\n", f->result);
	pthread_mutex_unlock(&cs->wlock);
	size_t len = strlen(text);
	if (off >= len)
		return 0;
	n = (ssize_t)(len - off < size ? len - off : size);
	memcpy(buf, text + off, (size_t)n);
	return n;
}

int ctl_state_wait_cancel(struct txd_fs *fs, void *arg)
{
	struct ctl_states *cs = fs->ctl_states;
	int err = -ENOENT;

	if (!cs)
		return err;
	pthread_mutex_lock(&cs->wlock);
	for (struct sfile *f = cs->waits.next; f != &cs->waits && err; f = f->next)
		if (ctl_waiter_cancel(&f->cw, arg))
			err = 0;
	pthread_mutex_unlock(&cs->wlock);
	return err;
}

int ctl_state_wait_poll(struct txd_fs *fs, struct sfile *f, void (*wake)(void *arg), void *arg)
{
	struct ctl_states *cs = fs->ctl_states;
	struct ctl_wakes wl = {.n = 0};
	int ready;

	pthread_mutex_lock(&cs->wlock);
	check_moved(fs, f);
	ready = f->ready;
	if (!ready && wake)
		ctl_waiter_poll(&f->cw, wake, arg, &wl);
	pthread_mutex_unlock(&cs->wlock);
	ctl_wakes_run(&wl);
	return ready;
}

void ctl_state_release(struct txd_fs *fs, struct sfile *f)
{
	struct ctl_states *cs = fs->ctl_states;
	struct ctl_wakes wl = {.n = 0};

	if (f->kind == S_CHANGED && f->next) {
		pthread_mutex_lock(&cs->wlock);
		f->prev->next = f->next;
		f->next->prev = f->prev;
		ctl_waiter_close(&f->cw, &wl);
		pthread_mutex_unlock(&cs->wlock);
	}
	ctl_wakes_run(&wl);
	pthread_mutex_destroy(&f->lock);
	free(f->buf);
	free(f);
}
