/*
 * dtc.c — prepared transactions (dtc.h): prepare, the write-set locks,
 * resolution by the decision, replay and checkpoints.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "chunk.h"
#include "ckpt.h"
#include "core.h"
#include "dtc.h"
#include "events.h"
#include "lease.h"
#include "rec.h"
#include "svc.h"
#include "txn.h"
#include "txn_i.h"
#include "vote.h"
#include "wal.h"

#define OP_HDR 8 /* rec.h: u16 op, u16 reserved, u32 len */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static bool in_set(const uint64_t *v, uint32_t n, uint64_t x)
{
	return n && bsearch(&x, v, n, sizeof(*v), cmp_u64);
}

/* Whether t's view removes directory ino (its entries go: D2's reverse). */
static bool view_removes(struct txn *t, uint64_t ino)
{
	struct inode *in = ns_inode(&t->ns, ino);
	return !in || !in->head->nlink;
}

bool dtc_overlap(struct txd_fs *fs, struct txn *t, char *path, size_t cap)
{
	int moves = -1; /* t moves a directory: asked once, only if one is prepared that does */
	for (struct txn *p = fs->txns; p; p = p->next) {
		if (p == t || p->state != TXN_PREPARED)
			continue;
		if (p->moves_dir && moves < 0)
			moves = txn_moves_dir(fs, t);
		if (p->moves_dir && moves > 0) { /* D9 */
			snprintf(path, cap, "/ (a directory move while %s moves one)", p->name);
			return true;
		}
		for (uint32_t k = 0; k < t->nkeys; k++)
			if (txn_has_key(p, t->keys[k].parent, t->keys[k].name,
					strlen(t->keys[k].name)) ||
			    in_set(p->prmdirs, p->nprmdirs, t->keys[k].parent)) {
				txn_key_path(fs, &t->keys[k], path, cap);
				return true;
			}
		for (uint32_t k = 0; k < t->ninos; k++)
			if (txn_has_ino(p, t->inos[k])) {
				struct inode *m = ns_inode(&fs->ns, t->inos[k]);
				if (m)
					ns_path(&fs->ns, m, path, cap);
				else
					snprintf(path, cap, "?");
				return true;
			}
		for (uint32_t k = 0; k < t->ndirs; k++)
			if (in_set(p->pdirs, p->npdirs, t->dirs[k]) &&
			    view_removes(t, t->dirs[k])) {
				struct inode *m = ns_inode(&fs->ns, t->dirs[k]);
				if (m)
					ns_path(&fs->ns, m, path, cap);
				else
					snprintf(path, cap, "?");
				return true;
			}
	}
	return false;
}

bool dtc_ino_locked(struct txd_fs *fs, const struct txn *self, uint64_t ino)
{
	for (struct txn *p = fs->txns; p; p = p->next)
		if (p != self && p->state == TXN_PREPARED && txn_has_ino(p, ino))
			return true;
	return false;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static uint16_t get16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return v;
}

int dtc_locked_check(struct txd_fs *fs, const uint8_t *ops, size_t len)
{
	bool any = false;
	for (struct txn *p = fs->txns; p && !any; p = p->next)
		any = p->state == TXN_PREPARED;
	if (!any || len < REC_HDR_SIZE)
		return 0;
	uint64_t txid = get64(ops);
	const uint8_t *q = ops + REC_HDR_SIZE, *end = ops + len;
	while (q + OP_HDR <= end) {
		uint16_t op = get16(q);
		uint32_t olen = get32(q + 4);
		const uint8_t *body = q + OP_HDR;
		if (olen > (size_t)(end - body))
			break;
		uint64_t parent = 0, ino = 0;
		const char *name = NULL;
		uint16_t nl = 0;
		bool set = op == OP_DENT_SET, gone = false; /* gone: an inode's nlink 0 */
		if (op == OP_INODE && olen >= 24)
			gone = get32(body + 20) == 0;
		if (op == OP_DENT_SET && olen >= 26) {
			parent = get64(body);
			nl = get16(body + 24);
			name = (const char *)body + 26;
		} else if (op == OP_DENT_DEL && olen >= 10) {
			parent = get64(body);
			nl = get16(body + 8);
			name = (const char *)body + 10;
		} else if ((op == OP_INODE || op == OP_CONTENT || op == OP_XATTR_SET ||
			    op == OP_XATTR_DEL || op == OP_FREE) &&
			   olen >= 8) {
			ino = get64(body);
		}
		if (name && (size_t)nl + (size_t)(name - (const char *)body) > olen)
			name = NULL;
		/* D9: a directory bound under a new parent (a move) */
		struct inode *moved = set && olen >= 16 ? ns_inode(&fs->ns, get64(body + 8)) : NULL;
		bool dir_move = moved && moved->dir && moved->parent != parent;
		for (struct txn *p = fs->txns; p; p = p->next) {
			if (p->state != TXN_PREPARED || p->id == txid)
				continue;
			if ((dir_move && p->moves_dir) || (name && txn_has_key(p, parent, name, nl)) ||
			    (ino && txn_has_ino(p, ino)) ||
			    (set && in_set(p->prmdirs, p->nprmdirs, parent)) ||
			    (gone && in_set(p->pdirs, p->npdirs, ino)))
				return -EBUSY;
		}
		q = body + olen;
	}
	return 0;
}

/* The PREPARE and RESOLVE payloads: dtc.h. Directory entry flags: */
#define PREP_HDR      64
#define PD_REMOVED    1 /* removed in the view: nlink 0 at resolve */
#define PD_REL	      2 /* nlink = main head + delta */
#define PD_ZERO	      4 /* the view's nlink is 0 */
#define PD_KEEPMODE   8 /* mode, uid, gid: the main head's */
#define PD_MAINPARENT 16

struct prep_view {
	uint64_t txid, snap, began_ns;
	uint32_t uid, gid, nkeys, ninos, ndirs;
	const char *proposal, *participant, *name;
	uint16_t plen, nlen, tlen;
	const uint8_t *keys, *inos, *dirs, *body, *dirops;
	uint32_t keys_len, body_len, dirops_len;
};

static int prep_decode(const uint8_t *b, size_t len, struct prep_view *v)
{
	if (len < PREP_HDR || b[0] != 1)
		return -TXD_ECORRUPT;
	v->plen = get16(b + 2);
	v->nlen = get16(b + 4);
	v->tlen = get16(b + 6);
	v->txid = get64(b + 8);
	v->snap = get64(b + 16);
	v->uid = get32(b + 24);
	v->gid = get32(b + 28);
	v->nkeys = get32(b + 32);
	v->ninos = get32(b + 36);
	v->ndirs = get32(b + 40);
	v->body_len = get32(b + 44);
	v->began_ns = get64(b + 48);
	v->dirops_len = get32(b + 56);
	size_t off = PREP_HDR;
	if (!v->plen || !v->nlen || !v->tlen || v->plen > 255 || v->nlen > 255 || v->tlen > 255 ||
	    len - off < (size_t)v->plen + v->nlen + v->tlen)
		return -TXD_ECORRUPT;
	v->proposal = (const char *)b + off;
	v->participant = v->proposal + v->plen;
	v->name = v->participant + v->nlen;
	off += (size_t)v->plen + v->nlen + v->tlen;
	v->keys = b + off;
	for (uint32_t k = 0; k < v->nkeys; k++) {
		if (len - off < 10)
			return -TXD_ECORRUPT;
		uint16_t nl = get16(b + off + 8);
		if (!nl || len - off - 10 < nl)
			return -TXD_ECORRUPT;
		off += 10 + (size_t)nl;
	}
	v->keys_len = (uint32_t)(b + off - v->keys);
	v->inos = b + off;
	if ((len - off) / 8 < v->ninos)
		return -TXD_ECORRUPT;
	off += (size_t)v->ninos * 8;
	v->dirs = b + off;
	if ((len - off) / 24 < v->ndirs)
		return -TXD_ECORRUPT;
	off += (size_t)v->ndirs * 24;
	v->body = b + off;
	if (len - off < (size_t)v->body_len + v->dirops_len)
		return -TXD_ECORRUPT;
	v->dirops = v->body + v->body_len;
	if (off + v->body_len + v->dirops_len != len)
		return -TXD_ECORRUPT;
	struct rec_hdr h;
	if (rec_validate(v->body, v->body_len, &h) || rec_validate(v->dirops, v->dirops_len, &h))
		return -TXD_ECORRUPT;
	return 0;
}

/* t->pdirs and t->prmdirs from its PREPARE record (D2); on failure none. */
static int prep_index(struct txn *t, const uint8_t *rec, size_t len)
{
	struct prep_view v;
	int err = prep_decode(rec, len, &v);
	if (err)
		return err;
	t->pdirs = malloc((v.ndirs + 1) * sizeof(*t->pdirs));
	t->prmdirs = malloc((v.ndirs + 1) * sizeof(*t->prmdirs));
	if (!t->pdirs || !t->prmdirs) {
		free(t->pdirs);
		free(t->prmdirs);
		t->pdirs = t->prmdirs = NULL;
		return -ENOMEM;
	}
	for (uint32_t k = 0; k < v.ndirs; k++) {
		const uint8_t *d = v.dirs + (size_t)k * 24;
		t->pdirs[t->npdirs++] = get64(d);
		if (get32(d + 16) & (PD_REMOVED | PD_ZERO))
			t->prmdirs[t->nprmdirs++] = get64(d);
	}
	qsort(t->pdirs, t->npdirs, sizeof(*t->pdirs), cmp_u64);
	qsort(t->prmdirs, t->nprmdirs, sizeof(*t->prmdirs), cmp_u64);
	return 0;
}

struct prep_dir {
	uint64_t ino;
	int64_t delta;
	uint32_t flags, zero;
};

/* The PREPARE payload of t (fs->lock held). */
static int prep_encode(struct txd_fs *fs, struct txn *t, const char *proposal,
		       const char *participant, uint8_t **out, uint32_t *outlen)
{
	struct rec_buf body, dops;
	struct iovec iov[1];
	uint64_t *olddirs = NULL;
	uint32_t nold, nd = 0;
	struct prep_dir *dirs = calloc(t->ndirs + 1, sizeof(*dirs));
	rec_init(&body, t->id, 0, 0);
	rec_init(&dops, t->id, 0, 0);
	int err = dirs ? txn_old_dirs(fs, t, &olddirs, &nold) : -ENOMEM;
	if (!err)
		err = txn_log_ops(t, olddirs, nold, &body);
	for (uint32_t k = 0; !err && k < t->ndirs; k++) {
		struct inode *in = ns_inode(&t->ns, t->dirs[k]);
		struct inode *m = ns_inode(&fs->ns, t->dirs[k]);
		struct prep_dir *d = &dirs[nd];
		d->ino = t->dirs[k];
		if (!in && m && m->dir) {
			d->flags = PD_REMOVED;
			nd++;
			continue;
		}
		if (!in || !in->dir)
			continue;
		const struct iver *then = m ? ns_iver_at(m, t->snap) : NULL;
		struct rec_inode r;
		ns_inode_rec(in, &r);
		if (then && m->head->nlink) {
			d->flags |= PD_REL;
			d->delta = (int64_t)in->head->nlink - (int64_t)then->nlink;
			if (in->head->nlink == 0)
				d->flags |= PD_ZERO | PD_MAINPARENT;
			if (then->mode == in->head->mode && then->uid == in->head->uid &&
			    then->gid == in->head->gid)
				d->flags |= PD_KEEPMODE;
		}
		rec_inode(&dops, &r);
		nd++;
	}
	free(olddirs);
	if (!err && (body.err || dops.err))
		err = -ENOMEM;
	if (err || (err = rec_finish(&body, iov)) < 0 || (err = rec_finish(&dops, iov)) < 0)
		goto out;
	err = 0;
	size_t plen = strlen(proposal), nlen = strlen(participant), tlen = strlen(t->name);
	size_t keys_len = 0;
	for (uint32_t k = 0; k < t->nkeys; k++)
		keys_len += 10 + strlen(t->keys[k].name);
	size_t len = PREP_HDR + plen + nlen + tlen + keys_len + (size_t)t->ninos * 8 +
		     (size_t)nd * 24 + body.len + dops.len;
	if (len > (512u << 20) || tlen > 255) {
		err = -EFBIG;
		goto out;
	}
	uint8_t *b = calloc(1, len);
	if (!b) {
		err = -ENOMEM;
		goto out;
	}
	uint16_t p16 = (uint16_t)plen, n16 = (uint16_t)nlen, t16 = (uint16_t)tlen;
	uint32_t bl = (uint32_t)body.len, dl = (uint32_t)dops.len;
	b[0] = 1;
	memcpy(b + 2, &p16, 2);
	memcpy(b + 4, &n16, 2);
	memcpy(b + 6, &t16, 2);
	memcpy(b + 8, &t->id, 8);
	memcpy(b + 16, &t->snap, 8);
	memcpy(b + 24, &t->uid, 4);
	memcpy(b + 28, &t->gid, 4);
	memcpy(b + 32, &t->nkeys, 4);
	memcpy(b + 36, &t->ninos, 4);
	memcpy(b + 40, &nd, 4);
	memcpy(b + 44, &bl, 4);
	memcpy(b + 48, &t->began_ns, 8);
	memcpy(b + 56, &dl, 4);
	size_t off = PREP_HDR;
	memcpy(b + off, proposal, plen);
	memcpy(b + off + plen, participant, nlen);
	memcpy(b + off + plen + nlen, t->name, tlen);
	off += plen + nlen + tlen;
	for (uint32_t k = 0; k < t->nkeys; k++) {
		uint16_t kl = (uint16_t)strlen(t->keys[k].name);
		memcpy(b + off, &t->keys[k].parent, 8);
		memcpy(b + off + 8, &kl, 2);
		memcpy(b + off + 10, t->keys[k].name, kl);
		off += 10 + (size_t)kl;
	}
	if (t->ninos)
		memcpy(b + off, t->inos, (size_t)t->ninos * 8);
	off += (size_t)t->ninos * 8;
	for (uint32_t k = 0; k < nd; k++, off += 24) {
		memcpy(b + off, &dirs[k].ino, 8);
		memcpy(b + off + 8, &dirs[k].delta, 8);
		memcpy(b + off + 16, &dirs[k].flags, 4);
	}
	memcpy(b + off, body.ops, body.len);
	memcpy(b + off + body.len, dops.ops, dops.len);
	*out = b;
	*outlen = (uint32_t)len;
out:
	rec_release(&body);
	rec_release(&dops);
	free(dirs);
	return err;
}

/* The commit record of a prepared transaction (committed decision): its ops,
 * then its directories' attributes recomputed against the main head now. */
static int prep_commit_record(struct txd_fs *fs, struct txn *t, struct rec_buf *b)
{
	struct prep_view v;
	rec_init(b, t->id, fs_now_ns(), 0); /* the caller releases it, also on failure */
	int err = prep_decode(t->prep, t->prep_len, &v);
	if (err)
		return err;
	struct rec_hdr bh, dh;
	rec_validate(v.body, v.body_len, &bh);
	rec_validate(v.dirops, v.dirops_len, &dh);
	uint8_t *q = rec_reserve(b, v.body_len - REC_HDR_SIZE);
	if (!q)
		return -ENOMEM;
	memcpy(q, v.body + REC_HDR_SIZE, v.body_len - REC_HDR_SIZE);
	b->nops += bh.nops;
	struct rec_iter it;
	struct rec_opv op;
	rec_iter_init(&it, v.dirops, &dh);
	for (uint32_t k = 0; k < v.ndirs; k++) {
		const uint8_t *d = v.dirs + (size_t)k * 24;
		uint64_t ino = get64(d);
		int64_t delta;
		memcpy(&delta, d + 8, 8);
		uint32_t flags = get32(d + 16);
		struct inode *m = ns_inode(&fs->ns, ino);
		struct rec_inode r;
		if (flags & PD_REMOVED) {
			if (!m || !m->dir)
				continue;
			ns_inode_rec(m, &r);
			r.nlink = 0;
			r.ctime = fs_now_ts();
			rec_inode(b, &r);
			continue;
		}
		if (!rec_next(&it, &op) || op.op != OP_INODE)
			return -TXD_ECORRUPT;
		r = op.u.inode;
		if ((flags & PD_REL) && m && m->head->nlink) {
			r.nlink = (uint32_t)((int64_t)m->head->nlink + delta);
			if (flags & PD_ZERO)
				r.nlink = 0;
			if (flags & PD_KEEPMODE) {
				r.mode = m->head->mode;
				r.uid = m->head->uid;
				r.gid = m->head->gid;
			}
			if (flags & PD_MAINPARENT)
				r.parent = m->parent;
		}
		rec_inode(b, &r);
	}
	return b->err;
}

static void prep_event(struct txd_fs *fs, const struct txn *t, const char *type,
		       const char *outcome, const char *reason)
{
	cJSON *f = cJSON_CreateObject();
	ev_add_u64(f, "txn", t->id);
	cJSON_AddStringToObject(f, "proposal", t->proposal ? t->proposal : "");
	cJSON_AddStringToObject(f, "participant", t->participant ? t->participant : "");
	if (outcome)
		cJSON_AddStringToObject(f, "outcome", outcome);
	if (reason)
		cJSON_AddStringToObject(f, "reason", reason);
	ev_emit(fs->events, fs_now_ns(), type, f);
}

/* D7: its proposal kept past the retention while it waits on it. */
static int pin(struct txd_fs *fs, struct txn *t, const char *proposal)
{
	if (t->pinned || !fs->svc)
		return 0;
	int err = vote_pin(svc_vote(fs->svc), proposal);
	t->pinned = !err;
	return err;
}

static void unpin(struct txd_fs *fs, struct txn *t)
{
	if (t->pinned && fs->svc)
		vote_unpin(svc_vote(fs->svc), t->proposal);
	t->pinned = false;
}

static void aborted_status(struct txn *t, const char *reason)
{
	char e[TXN_LINE / 2];
	txn_set_status(t, "aborted decision proposal=%s reason=%s", t->proposal,
		       txn_esc_path(reason ? reason : "", e, sizeof(e)));
}

/* Append one non-commit record (fs->lock held); a failure fails the store. */
static int append_rec(struct txd_fs *fs, uint16_t type, const void *p, size_t len,
		      struct wal_pos *pos)
{
	if (fs->failed || wal_failed(fs->wal))
		return -EIO;
	struct iovec iov = {.iov_base = (void *)p, .iov_len = len};
	int err = wal_append(fs->wal, type, &iov, 1, pos);
	if (err == -ENOSPC || err == -EDQUOT) /* nothing reached the log (wal.h W8) */
		return fs_note_space(fs, "transaction record", err);
	if (err) {
		fs->failed = true;
		cJSON *f = cJSON_CreateObject();
		cJSON_AddStringToObject(f, "reason", "a transaction record did not reach the log");
		cJSON_AddStringToObject(f, "error", txd_strerror(err));
		ev_emit(fs->events, fs_now_ns(), "store_failed", f);
		return -EIO;
	}
	return 0;
}

/* The decision of t's proposal (fs->lock held). A failure leaves it
 * prepared: a restart resolves it again. */
static int resolve(struct txd_fs *fs, struct txn *t, enum vote_outcome o, const char *reason)
{
	if (t->state != TXN_PREPARED || o == VOTE_OPEN)
		return 0;
	int err;
	if (o == VOTE_COMMITTED) {
		struct rec_buf b;
		struct wal_pos pos;
		if ((err = prep_commit_record(fs, t, &b))) {
			rec_release(&b);
			return err;
		}
		txn_publish(fs, t);
		err = fs_commit_prep(fs, &b, NULL, &pos);
		rec_release(&b);
		if (err)
			return err;
		t->commit_id = pos.lsn;
		txn_set_status(t, "committed %" PRIu64, pos.lsn);
		txn_end(fs, t, TXN_COMMITTED);
		unpin(fs, t);
		txn_drop_dead(fs, t);
		prep_event(fs, t, "txn_resolve", "committed", NULL);
		cJSON *f = cJSON_CreateObject();
		ev_add_u64(f, "txn", t->id);
		ev_add_u64(f, "commit", pos.lsn);
		cJSON_AddNumberToObject(f, "ops", t->log.nops);
		ev_emit(fs->events, fs_now_ns(), "txn_commit", f);
		return 0;
	}
	size_t rl = reason ? strlen(reason) : 0;
	if (rl > 1024)
		rl = 1024;
	uint8_t *r = calloc(1, 16 + rl);
	if (!r)
		return -ENOMEM;
	uint16_t r16 = (uint16_t)rl;
	r[0] = 1;
	r[1] = VOTE_ABORTED;
	memcpy(r + 2, &r16, 2);
	memcpy(r + 8, &t->id, 8);
	if (rl)
		memcpy(r + 16, reason, rl);
	struct wal_pos pos;
	err = append_rec(fs, WAL_REC_RESOLVE, r, 16 + rl, &pos);
	free(r);
	if (err)
		return err;
	aborted_status(t, reason);
	txn_end(fs, t, TXN_ABORTED);
	unpin(fs, t);
	prep_event(fs, t, "txn_resolve", "aborted", reason ? reason : "");
	return 0;
}

static void on_decision(void *arg, const char *proposal, enum vote_outcome o, const char *reason)
{
	struct txd_fs *fs = arg;
	pthread_mutex_lock(&fs->lock);
	for (struct txn *t = fs->txns; t; t = t->next)
		if (t->state == TXN_PREPARED && !strcmp(t->proposal, proposal)) {
			int err = resolve(fs, t, o, reason);
			if (err)
				syslog(LOG_ERR, "txdir: transaction %" PRIu64 " stays prepared: %s",
				       t->id, txd_strerror(err));
		}
	pthread_mutex_unlock(&fs->lock);
	fs_notify_flush(fs);
}

void dtc_start(struct txd_fs *fs)
{
	if (!fs->svc)
		return;
	svc_set_decision_listener(fs->svc, on_decision, fs);
	pthread_mutex_lock(&fs->lock);
	for (struct txn *t = fs->txns; t; t = t->next) {
		enum vote_outcome o;
		char why[512];
		if (t->state != TXN_PREPARED ||
		    vote_outcome(svc_vote(fs->svc), t->proposal, &o, why, sizeof(why)))
			continue;
		int err = resolve(fs, t, o, why);
		if (err)
			syslog(LOG_ERR, "txdir: transaction %" PRIu64 " stays prepared: %s", t->id,
			       txd_strerror(err));
	}
	pthread_mutex_unlock(&fs->lock);
	fs_notify_flush(fs);
}

/* dtc_prepare with a reference on t (its locks are dropped meanwhile). */
static int prepare(struct txd_fs *fs, struct txn *t, const char *proposal, const char *participant)
{
	if (t->state == TXN_PREPARED)
		return !strcmp(t->proposal, proposal) && !strcmp(t->participant, participant)
			       ? 0
			       : -EBUSY;
	if (t->state != TXN_ACTIVE)
		return t->state == TXN_COMMITTED ? -EINVAL : -EBUSY;
	if (!fs->svc)
		return -ENOENT;
	/* No wait for the view's writable handles here (a commit waits up to
	 * TXN_BUSY_WAIT_MS): prepares run one at a time, so one user's open
	 * files would hold everyone's prepares back 2 s each. A view still
	 * open for writing is EBUSY at once (open-in-view, in last_error);
	 * the caller retries (mountctl run does, for a bounded time). */
	if (t->state == TXN_ACTIVE && t->log.nops)
		txn_sync_packs(fs);
	while (t->committing)
		pthread_cond_wait(&fs->txn_cv, &fs->lock);
	if (t->state != TXN_ACTIVE)
		return t->state == TXN_PREPARED	   ? -EBUSY
		       : t->state == TXN_COMMITTED ? -EINVAL
						   : -EBUSY;
	/* a vote it could not cast refuses the prepare with nothing changed:
	 * P unknown, not open or decided, NAME not a participant, or NAME
	 * voted already (its vote stands for one transaction) */
	int err = vote_check_unvoted(svc_vote(fs->svc), proposal, participant);
	if (err)
		return err;
	err = txn_commit_checks(fs, t);
	if (err && t->state == TXN_ABORTED) { /* a lost conflict: vote no, with why */
		char *why = strdup(t->status);
		pthread_mutex_unlock(&fs->lock);
		vote_cast_external(svc_vote(fs->svc), proposal, participant, false, why, false);
		pthread_mutex_lock(&fs->lock);
		free(why);
		return err;
	}
	if (err)
		return err;
	uint8_t *rec = NULL;
	uint32_t len;
	struct wal_pos pos;
	bool sync = fs->opts.durability != TXD_DUR_NONE;
	char *p = strdup(proposal), *n = strdup(participant);
	if (!p || !n)
		err = -ENOMEM;
	else if (!(err = pin(fs, t, proposal))) /* D7 */
		err = svc_upgrade(fs->svc); /* svc.h V3: before a record it cannot read */
	if (err || (err = prep_encode(fs, t, proposal, participant, &rec, &len)) ||
	    (err = prep_index(t, rec, len)) || (sync && (err = chunkstore_sync(fs->cs))) ||
	    (err = append_rec(fs, WAL_REC_PREPARE, rec, len, &pos))) {
		if (t->pinned) {
			vote_unpin(svc_vote(fs->svc), proposal);
			t->pinned = false;
		}
		free(p);
		free(n);
		free(rec);
		free(t->pdirs);
		free(t->prmdirs);
		t->pdirs = t->prmdirs = NULL;
		t->npdirs = t->nprmdirs = 0;
		return err;
	}
	t->proposal = p;
	t->participant = n;
	t->prep = rec;
	t->prep_len = len;
	t->prep_lsn = pos.lsn;
	t->moves_dir = txn_moves_dir(fs, t); /* D9, before the view is frozen */
	t->state = TXN_PREPARED;
	t->last_error[0] = 0;
	ckpt_snapshot_release(fs, t->snap); /* the view is frozen (T3) */
	t->snap_released = true;
	txn_set_status(t, "prepared %s", proposal);
	txn_write_record(fs, t);
	prep_event(fs, t, "txn_prepare", NULL, NULL);
	pthread_cond_broadcast(&fs->txn_cv);
	/* its vote: once the record is durable, with no fs->lock */
	if (sync)
		fs_will_block(fs);
	pthread_mutex_unlock(&fs->lock);
	err = sync ? wal_sync(fs->wal, pos.lsn) : 0;
	if (!err)
		err = vote_cast_external(svc_vote(fs->svc), proposal, participant, true, NULL,
					 false);
	pthread_mutex_lock(&fs->lock);
	if (err && err != -EIO && t->state == TXN_PREPARED) {
		char why[64];
		snprintf(why, sizeof(why), "vote refused: %s", txd_strerror(err));
		int e2 = resolve(fs, t, VOTE_ABORTED, why);
		if (e2)
			syslog(LOG_ERR, "txdir: transaction %" PRIu64 " stays prepared: %s", t->id,
			       txd_strerror(e2));
	}
	return err;
}

int dtc_prepare(struct txd_fs *fs, struct txn *t, pid_t pid, const char *proposal,
		const char *participant)
{
	(void)pid;
	if (lease_name_check(proposal) || lease_name_check(participant))
		return -EINVAL;
	txn_get(t);
	int err = prepare(fs, t, proposal, participant);
	txn_put(fs, t);
	return err;
}

/* ---- deferred prepares (dtc.h "Deferred prepare") ---- */
struct dtc_job {
	struct dtc_job *next;
	struct txn *t; /* a reference */
	pid_t pid;
	char *proposal, *participant;
	void (*done)(void *arg, int err);
	void *arg;
};

struct dtc_worker {
	pthread_t thread;
	pthread_cond_t cv; /* on fs->lock: a job queued, or stop */
	struct dtc_job *head, **tail;
	bool stop;
};

static void job_free(struct txd_fs *fs, struct dtc_job *j)
{
	txn_put(fs, j->t);
	free(j->proposal);
	free(j->participant);
	free(j);
}

static void *worker_main(void *arg)
{
	struct txd_fs *fs = arg;
	pthread_mutex_lock(&fs->lock);
	struct dtc_worker *w = fs->dtc;
	for (;;) {
		while (!w->stop && !w->head)
			pthread_cond_wait(&w->cv, &fs->lock);
		if (w->stop)
			break;
		struct dtc_job *j = w->head;
		if (!(w->head = j->next))
			w->tail = &w->head;
		/* off the queue: a FUSE_INTERRUPT can no longer withdraw it */
		int err = prepare(fs, j->t, j->proposal, j->participant);
		void (*done)(void *, int) = j->done;
		void *darg = j->arg;
		job_free(fs, j);
		pthread_mutex_unlock(&fs->lock);
		fs_notify_flush(fs);
		done(darg, err); /* exactly once: the job is gone */
		pthread_mutex_lock(&fs->lock);
	}
	pthread_mutex_unlock(&fs->lock);
	return NULL;
}

int dtc_prepare_async(struct txd_fs *fs, struct txn *t, pid_t pid, const char *proposal,
		      const char *participant, void (*done)(void *arg, int err), void *arg)
{
	if (!done || t->state != TXN_ACTIVE)
		return dtc_prepare(fs, t, pid, proposal, participant); /* answers at once */
	if (lease_name_check(proposal) || lease_name_check(participant))
		return -EINVAL;
	if (!fs->dtc) {
		struct dtc_worker *w = calloc(1, sizeof(*w));
		if (!w)
			return -ENOMEM;
		w->tail = &w->head;
		pthread_cond_init(&w->cv, NULL);
		fs->dtc = w;
		int e = pthread_create(&w->thread, NULL, worker_main, fs);
		if (e) {
			fs->dtc = NULL;
			pthread_cond_destroy(&w->cv);
			free(w);
			return -e;
		}
	}
	struct dtc_job *j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->proposal = strdup(proposal);
	j->participant = strdup(participant);
	if (!j->proposal || !j->participant) {
		free(j->proposal);
		free(j->participant);
		free(j);
		return -ENOMEM;
	}
	txn_get(t);
	j->t = t;
	j->pid = pid;
	j->done = done;
	j->arg = arg;
	*fs->dtc->tail = j;
	fs->dtc->tail = &j->next;
	pthread_cond_signal(&fs->dtc->cv);
	return -EINPROGRESS;
}

int dtc_cancel(struct txd_fs *fs, void *arg)
{
	struct dtc_job *found = NULL;
	pthread_mutex_lock(&fs->lock);
	struct dtc_worker *w = fs->dtc;
	for (struct dtc_job **pp = w ? &w->head : NULL; pp && *pp; pp = &(*pp)->next)
		if ((*pp)->arg == arg) {
			found = *pp;
			if (!(*pp = found->next))
				w->tail = pp;
			job_free(fs, found);
			break;
		}
	pthread_mutex_unlock(&fs->lock);
	return found ? 0 : -ENOENT;
}

void dtc_stop(struct txd_fs *fs)
{
	pthread_mutex_lock(&fs->lock);
	struct dtc_worker *w = fs->dtc;
	if (!w) {
		pthread_mutex_unlock(&fs->lock);
		return;
	}
	w->stop = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&fs->lock);
	pthread_join(w->thread, NULL); /* a prepare under way finishes first */
	pthread_mutex_lock(&fs->lock);
	while (w->head) { /* unmount: nobody is left to answer (as txn_free) */
		struct dtc_job *j = w->head;
		w->head = j->next;
		job_free(fs, j);
	}
	fs->dtc = NULL;
	pthread_mutex_unlock(&fs->lock);
	pthread_cond_destroy(&w->cv);
	free(w);
}

/* ---- replay and checkpoints ---- */
static void end_replayed(struct txd_fs *fs, struct txn *t, enum txn_state st)
{
	t->state = st;
	t->ended_ns = fs_now_ns();
	unpin(fs, t);
	txn_write_record(fs, t);
	if (t->listed) {
		t->listed = false;
		txn_put(fs, t);
	}
}

int dtc_replay_prepare(struct txd_fs *fs, const void *payload, size_t len, uint64_t lsn)
{
	struct prep_view v;
	int err = prep_decode(payload, len, &v);
	if (err)
		return err;
	if (v.txid >= fs->next_txid)
		fs->next_txid = v.txid + 1;
	/* the inodes it creates are not reused before it resolves */
	struct rec_hdr h;
	struct rec_iter it;
	struct rec_opv op;
	rec_validate(v.body, v.body_len, &h);
	rec_iter_init(&it, v.body, &h);
	while (rec_next(&it, &op))
		if (op.op == OP_INODE && op.u.inode.ino >= fs->ns.next_ino)
			fs->ns.next_ino = op.u.inode.ino + 1;
	if (txn_by_id(fs, v.txid))
		return 0; /* from the checkpoint already (or replayed twice) */
	struct txn *t = calloc(1, sizeof(*t));
	if (!t || ns_init(&t->ns)) {
		free(t);
		return -ENOMEM;
	}
	t->id = v.txid;
	t->snap = v.snap;
	t->snap_released = true;
	t->in_doubt = true;
	t->moves_dir = true; /* D9: no view to tell; until it resolves, no other moves */
	t->state = TXN_PREPARED;
	t->uid = v.uid;
	t->gid = v.gid;
	t->began_ns = v.began_ns;
	t->listed = true;
	t->refs = 1;
	t->prep_lsn = lsn;
	t->prep_len = (uint32_t)len;
	rec_init(&t->log, t->id, 0, 0);
	err = -ENOMEM;
	if (!(t->name = strndup(v.name, v.tlen)) || !(t->proposal = strndup(v.proposal, v.plen)) ||
	    !(t->participant = strndup(v.participant, v.nlen)) || !(t->prep = malloc(len)))
		goto fail;
	memcpy(t->prep, payload, len);
	uint8_t *q = rec_reserve(&t->log, v.body_len - REC_HDR_SIZE);
	if (!q)
		goto fail;
	memcpy(q, v.body + REC_HDR_SIZE, v.body_len - REC_HDR_SIZE);
	t->log.nops = h.nops;
	if ((err = prep_index(t, payload, len)))
		goto fail;
	const uint8_t *k = v.keys;
	for (uint32_t i = 0; i < v.nkeys; i++) {
		uint16_t nl = get16(k + 8);
		if ((err = txn_add_key(t, get64(k), (const char *)k + 10, nl)))
			goto fail;
		k += 10 + (size_t)nl;
	}
	for (uint32_t i = 0; i < v.ninos; i++)
		if ((err = txn_add_ino(t, get64(v.inos + (size_t)i * 8))))
			goto fail;
	txn_set_status(t, "prepared %s", t->proposal);
	if ((err = pin(fs, t, t->proposal))) /* D7: before vote_start's retention */
		goto fail;
	t->next = fs->txns;
	fs->txns = t;
	if (fs->svc)
		vote_cast_external(svc_vote(fs->svc), t->proposal, t->participant, true, NULL,
				   true);
	return 0;
fail:
	txn_free(t);
	return err;
}

int dtc_replay_resolve(struct txd_fs *fs, const void *payload, size_t len)
{
	const uint8_t *b = payload;
	/* the reason: at most 1024 bytes, as dtc's abort writes it (a longer
	 * one would overrun reason[] below; tests/fuzz/corpus/fuzz_dtc) */
	if (len < 16 || b[0] != 1 || len != 16 + (size_t)get16(b + 2) || len - 16 > 1024)
		return -TXD_ECORRUPT;
	struct txn *t = txn_by_id(fs, get64(b + 8));
	if (!t || t->state != TXN_PREPARED)
		return 0; /* resolved before the checkpoint */
	char reason[1025];
	size_t rl = len - 16;
	memcpy(reason, b + 16, rl);
	reason[rl] = 0;
	aborted_status(t, reason);
	end_replayed(fs, t, TXN_ABORTED);
	return 0;
}

/* A replayed commit of a prepared transaction ends it (txn_replayed). */
void dtc_replayed_commit(struct txd_fs *fs, uint64_t txn, uint64_t lsn)
{
	struct txn *t = txn ? txn_by_id(fs, txn) : NULL;
	if (!t || t->state != TXN_PREPARED)
		return;
	t->commit_id = lsn;
	txn_set_status(t, "committed %" PRIu64, lsn);
	end_replayed(fs, t, TXN_COMMITTED);
}

int dtc_save(struct txd_fs *fs, void **buf, size_t *len)
{
	size_t n = 4;
	uint32_t count = 0;
	*buf = NULL;
	*len = 0;
	for (struct txn *t = fs->txns; t; t = t->next)
		if (t->state == TXN_PREPARED) {
			n += 12 + t->prep_len;
			count++;
		}
	if (!count)
		return 0;
	uint8_t *b = malloc(n), *p = b;
	if (!b)
		return -ENOMEM;
	memcpy(p, &count, 4);
	p += 4;
	for (struct txn *t = fs->txns; t; t = t->next)
		if (t->state == TXN_PREPARED) {
			memcpy(p, &t->prep_len, 4);
			memcpy(p + 4, &t->prep_lsn, 8);
			memcpy(p + 12, t->prep, t->prep_len);
			p += 12 + t->prep_len;
		}
	*buf = b;
	*len = n;
	return 0;
}

int dtc_load(struct txd_fs *fs, const void *buf, size_t len)
{
	const uint8_t *p = buf, *end = p + len;
	if (len < 4)
		return -TXD_ECORRUPT;
	uint32_t count = get32(p);
	p += 4;
	for (uint32_t k = 0; k < count; k++) {
		if (end - p < 12 || (size_t)(end - p - 12) < get32(p))
			return -TXD_ECORRUPT;
		uint32_t l = get32(p);
		int err = dtc_replay_prepare(fs, p + 12, l, get64(p + 4));
		if (err)
			return err;
		p += 12 + (size_t)l;
	}
	return p == end ? 0 : -TXD_ECORRUPT;
}
