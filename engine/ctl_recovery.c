/*
 * ctl_recovery.c — `.txdir/recovery/` over the journal index
 * (ctl_recovery.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ctl_lease.h" /* ctl_entry, ctl_fill (ctl.c) */
#include "ctl_recovery.h"
#include "core.h"
#include "dtree.h"
#include "journal.h"
#include "proc.h"
#include "svc.h"

enum {
	R_ROOT = CTL_RECOVERY_FIRST, /* .txdir/recovery */
	R_JOURNALS,                  /* recovery/journals */
	R_DEADS,                     /* recovery/dead_processes */
	R_JPID,                      /* journals/PID (key: journal_proc.id) */
	R_JOURNAL,                   /* journals/PID/journal */
	R_DEAD,                      /* dead_processes/PID */
	R_END
};

bool ctl_recovery_owns(unsigned kind)
{
	return kind >= CTL_RECOVERY_FIRST && kind < R_END;
}

bool ctl_recovery_is_dir(unsigned kind)
{
	return kind == R_ROOT || kind == R_JOURNALS || kind == R_DEADS || kind == R_JPID;
}

bool ctl_recovery_is_file(unsigned kind)
{
	return kind == R_JOURNAL || kind == R_DEAD;
}

unsigned ctl_recovery_root_kind(void)
{
	return R_ROOT;
}

static struct journal *jr(struct txd_fs *fs)
{
	return svc_journal(fs->svc);
}

/* Is the keyed object still listed (retention)? */
static bool present(struct txd_fs *fs, unsigned kind, uint64_t key)
{
	struct journal_proc p;
	uint64_t oldest = fs_retain_oldest_ns(fs);
	if (journal_get(jr(fs), key, &p))
		return false;
	return kind == R_DEAD ? p.dead_ns && p.dead_ns >= oldest : p.last_ns >= oldest;
}

/* Does a live process other than p hold p's pid now (SPEC §6: records are
 * keyed by (pid, start time))? Then the plain name "PID" is the live
 * process's, and p, the newest of the records, shows only as PID.START. A
 * pid that is a thread of another process names no process: not reused. */
static bool pid_reused(struct txd_fs *fs, const struct journal_proc *p)
{
	struct proc_id id;
	if (proc_identify(svc_proc(fs->svc), p->pid, &id))
		return false;
	return id.pid == p->pid && id.start != p->start;
}

int ctl_recovery_lookup(struct txd_fs *fs, struct node *parent, const char *name,
			struct txd_entry *e)
{
	struct journal_proc p;
	uint64_t oldest = fs_retain_oldest_ns(fs);
	switch (parent->ctl) {
	case R_ROOT:
		if (strcmp(name, "journals") == 0)
			return ctl_entry(fs, R_JOURNALS, 0, e);
		if (strcmp(name, "dead_processes") == 0)
			return ctl_entry(fs, R_DEADS, 0, e);
		return -ENOENT;
	case R_JOURNALS:
	case R_DEADS: {
		bool dead = parent->ctl == R_DEADS;
		int err = journal_find(jr(fs), name, oldest, dead, &p);
		if (!err && !strchr(name, '.') && pid_reused(fs, &p))
			err = -ENOENT; /* "PID" is the live process's: no records yet */
		return err ? err : ctl_entry(fs, dead ? R_DEAD : R_JPID, p.id, e);
	}
	case R_JPID:
		if (strcmp(name, "journal") || !present(fs, R_JPID, parent->ctl_key))
			return -ENOENT;
		return ctl_entry(fs, R_JOURNAL, parent->ctl_key, e);
	default:
		return -ENOTDIR;
	}
}

int ctl_recovery_getattr(struct txd_fs *fs, struct node *n, struct txd_attr *a)
{
	if (n->ctl >= R_JPID && !present(fs, n->ctl, n->ctl_key))
		return -ENOENT; /* gone meanwhile (retention) */
	if (ctl_recovery_is_dir(n->ctl)) {
		a->mode = S_IFDIR | 0555;
		a->nlink = 2;
		a->size = 4096;
	} else {
		a->mode = S_IFREG | 0444;
		a->nlink = 1; /* size 0 as every control file (ctl.c) */
	}
	return 0;
}

struct names {
	struct {
		char name[48];
		struct journal_proc p;
	} *v;
	size_t n, cap;
};

static int add_name(void *arg, const struct journal_proc *p, const char *name)
{
	struct names *ns = arg;
	if (ns->n == ns->cap) {
		size_t cap = ns->cap ? 2 * ns->cap : 32;
		void *v = realloc(ns->v, cap * sizeof(*ns->v));
		if (!v)
			return -ENOMEM;
		ns->v = v;
		ns->cap = cap;
	}
	strncpy(ns->v[ns->n].name, name, sizeof(ns->v[ns->n].name) - 1);
	ns->v[ns->n].name[sizeof(ns->v[ns->n].name) - 1] = 0;
	ns->v[ns->n++].p = *p;
	return 0;
}

int ctl_recovery_readdir(struct txd_fs *fs, struct node *n, uint64_t off, bool plus,
			 txd_fill_fn fill, void *arg)
{
	/* offset 3 + k: the k-th entry */
	uint64_t k0 = off < 3 ? 0 : off - 2;
	if (n->ctl == R_ROOT) {
		static const struct {
			const char *name;
			unsigned kind;
		} ents[] = {{"dead_processes", R_DEADS}, {"journals", R_JOURNALS}};
		for (uint64_t k = k0; k < 2; k++)
			if (ctl_fill(fs, ents[k].name, ents[k].kind, 0, plus, k + 3, fill, arg))
				break;
		return 0;
	}
	if (n->ctl == R_JPID) {
		if (k0 == 0 && present(fs, R_JPID, n->ctl_key))
			ctl_fill(fs, "journal", R_JOURNAL, n->ctl_key, plus, 3, fill, arg);
		return 0;
	}
	if (n->ctl != R_JOURNALS && n->ctl != R_DEADS)
		return 0;
	bool dead = n->ctl == R_DEADS;
	uint64_t oldest = fs_retain_oldest_ns(fs);
	struct names ns = {0};
	journal_prune(jr(fs), oldest); /* J4: the index forgets what is gone */
	int err = journal_list(jr(fs), oldest, dead, add_name, &ns);
	for (uint64_t k = k0; !err && k < ns.n; k++) {
		const struct journal_proc *p = &ns.v[k].p;
		if (p->newest && pid_reused(fs, p)) /* as lookup: PID.START only */
			snprintf(ns.v[k].name, sizeof(ns.v[k].name), "%" PRIu32 ".%" PRIu64, p->pid,
				 p->start);
		if (ctl_fill(fs, ns.v[k].name, dead ? R_DEAD : R_JPID, p->id, plus, k + 3, fill,
			     arg))
			break;
	}
	free(ns.v);
	return err;
}

int ctl_recovery_render(struct txd_fs *fs, const struct node *n, const char *events, size_t len,
			char **out, size_t *outlen)
{
	struct journal_proc p;
	int err = journal_get(jr(fs), n->ctl_key, &p);
	if (err)
		return err;
	if (n->ctl == R_DEAD)
		return journal_render_dead(&p, events, len, out, outlen);
	return journal_render(jr(fs), &p, events, len, out, outlen);
}
