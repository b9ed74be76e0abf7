/*
 * txdtest.c — see txdtest.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "txdtest.h"

const struct txd_cred tt_cred = {.uid = 0, .gid = 0, .pid = 1, .umask = 022};

char *tt_mkstore(void)
{
	char tmpl[] = "/tmp/txdtest.XXXXXX";
	if (!mkdtemp(tmpl))
		return NULL;
	char *store;
	if (asprintf(&store, "%s/store", tmpl) < 0)
		return NULL;
	if (txd_store_init(store)) {
		free(store);
		return NULL;
	}
	return store;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void tt_rmtree(const char *dir)
{
	/* remove the mkdtemp parent of "store" too */
	char *parent = strdup(dir);
	char *slash = parent ? strrchr(parent, '/') : NULL;
	if (slash && strcmp(slash, "/store") == 0)
		*slash = 0;
	nftw(parent ? parent : dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(parent);
}

/* Look name up under dir. Like the kernel, the test keeps the lookup
 * reference (node ids stay valid while referenced); txd_fs_close frees them. */
static int step(struct txd_fs *fs, uint64_t dir, const char *name, size_t len, uint64_t *out)
{
	char buf[TXD_NAME_MAX + 2];
	struct txd_entry e;
	if (len > TXD_NAME_MAX)
		return -ENAMETOOLONG;
	memcpy(buf, name, len);
	buf[len] = 0;
	int err = txd_lookup(fs, dir, buf, &e);
	if (!err)
		*out = e.node;
	return err;
}

int tt_resolve(struct txd_fs *fs, const char *path, uint64_t *parent, const char **leaf,
	       uint64_t *node)
{
	uint64_t cur = TXD_ROOT_NODE;
	const char *p = path, *slash;
	int err;
	while ((slash = strchr(p, '/'))) {
		if ((err = step(fs, cur, p, (size_t)(slash - p), &cur)))
			return err;
		p = slash + 1;
	}
	if (parent)
		*parent = cur;
	if (leaf)
		*leaf = p;
	if (node)
		return *p ? step(fs, cur, p, strlen(p), node) : (*node = cur, 0);
	return 0;
}

int tt_put(struct txd_fs *fs, const char *path, const void *data, size_t len)
{
	uint64_t parent, node;
	const char *leaf;
	struct txd_open_out oo;
	struct txd_entry e;
	int err = tt_resolve(fs, path, &parent, &leaf, NULL);
	if (err)
		return err;
	err = tt_resolve(fs, path, NULL, NULL, &node);
	if (err == -ENOENT) {
		if ((err = txd_create(fs, &tt_cred, parent, leaf, 0644, O_WRONLY, &e, &oo)))
			return err;
	} else if (err) {
		return err;
	} else {
		err = txd_open(fs, NULL, node, O_WRONLY | O_TRUNC, &oo);
		if (err == -ESTALE) /* node frozen for readers: look up again */
			err = tt_resolve(fs, path, NULL, NULL, &node) ?: txd_open(fs, NULL, node, O_WRONLY | O_TRUNC, &oo);
		if (err)
			return err;
	}
	ssize_t n = len ? txd_write(fs, NULL, oo.fh, data, len, 0) : 0;
	err = n < 0 ? (int)n : 0;
	int ferr = txd_flush(fs, oo.fh, &tt_cred, NULL);
	txd_release(fs, oo.fh);
	return err ? err : ferr;
}

int tt_get(struct txd_fs *fs, const char *path, char **data, size_t *len)
{
	return tt_get_as(fs, NULL, path, data, len);
}

int tt_get_as(struct txd_fs *fs, const struct txd_cred *c, const char *path, char **data,
	      size_t *len)
{
	uint64_t node;
	struct txd_open_out oo;
	int err = tt_resolve(fs, path, NULL, NULL, &node);
	if (err || (err = txd_open(fs, c, node, O_RDONLY, &oo)))
		return err;
	size_t cap = 4096, have = 0;
	char *buf = malloc(cap + 1);
	for (;;) {
		if (have == cap) {
			cap *= 2;
			buf = realloc(buf, cap + 1);
		}
		ssize_t n = txd_read(fs, oo.fh, buf + have, cap - have, have);
		if (n <= 0) {
			err = (int)n;
			break;
		}
		have += (size_t)n;
	}
	txd_release(fs, oo.fh);
	if (err) {
		free(buf);
		return err;
	}
	buf[have] = 0;
	*data = buf;
	*len = have;
	return 0;
}

int tt_mkdir(struct txd_fs *fs, const char *path)
{
	uint64_t parent;
	const char *leaf;
	struct txd_entry e;
	int err = tt_resolve(fs, path, &parent, &leaf, NULL);
	return err ? err : txd_mkdir(fs, &tt_cred, parent, leaf, 0755, &e);
}

int tt_unlink(struct txd_fs *fs, const char *path)
{
	uint64_t parent;
	const char *leaf;
	int err = tt_resolve(fs, path, &parent, &leaf, NULL);
	return err ? err : txd_unlink(fs, NULL, parent, leaf);
}

int tt_rename(struct txd_fs *fs, const char *from, const char *to, unsigned flags)
{
	uint64_t p1, p2;
	const char *l1, *l2;
	int err = tt_resolve(fs, from, &p1, &l1, NULL);
	if (!err)
		err = tt_resolve(fs, to, &p2, &l2, NULL);
	return err ? err : txd_rename(fs, NULL, p1, l1, p2, l2, flags);
}

/* ---- fingerprint ------------------------------------------------------------ */
struct listing {
	char *p;
	size_t len, cap;
	struct txd_fs *fs;
	int err;
};

static void add(struct listing *l, const char *line)
{
	size_t n = strlen(line);
	if (l->len + n + 1 > l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 4096;
		while (cap < l->len + n + 1)
			cap *= 2;
		l->p = realloc(l->p, cap);
		l->cap = cap;
	}
	memcpy(l->p + l->len, line, n + 1);
	l->len += n;
}

struct names {
	char **v;
	size_t n;
};

static int collect(void *arg, const char *name, const struct txd_entry *e, uint64_t next)
{
	(void)e;
	(void)next;
	struct names *ns = arg;
	if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return 0;
	ns->v = realloc(ns->v, (ns->n + 1) * sizeof(*ns->v));
	ns->v[ns->n++] = strdup(name);
	return 0;
}

static int cmpstr(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void walk(struct listing *l, uint64_t dir, const char *prefix)
{
	uint64_t dh;
	struct names ns = {0};
	if ((l->err = l->err ?: txd_opendir(l->fs, dir, &dh)))
		return;
	txd_readdir(l->fs, dh, 0, false, collect, &ns);
	txd_releasedir(l->fs, dh);
	if (ns.n)
		qsort(ns.v, ns.n, sizeof(*ns.v), cmpstr);
	for (size_t k = 0; k < ns.n; k++) {
		char path[4096], line[4400];
		struct txd_entry e;
		snprintf(path, sizeof(path), "%s/%s", prefix, ns.v[k]);
		if (!l->err && (l->err = txd_lookup(l->fs, dir, ns.v[k], &e)) == 0) {
			uint64_t h = 0;
			if (S_ISREG(e.attr.mode)) {
				char *data = NULL;
				size_t len = 0;
				int err = tt_get(l->fs, path + 1, &data, &len);
				if (err)
					l->err = err;
				else
					h = XXH64(data, len, 0);
				free(data);
			}
			snprintf(line, sizeof(line), "%s %o %llu %016llx\n", path, e.attr.mode,
				 (unsigned long long)e.attr.size, (unsigned long long)h);
			add(l, line);
			if (S_ISDIR(e.attr.mode))
				walk(l, e.node, path);
			txd_forget(l->fs, e.node, 1);
		}
		free(ns.v[k]);
	}
	free(ns.v);
}

int tt_listing(struct txd_fs *fs, char **out)
{
	struct listing l = {.fs = fs};
	add(&l, "");
	walk(&l, TXD_ROOT_NODE, "");
	*out = l.p;
	return l.err;
}

int tt_fingerprint(struct txd_fs *fs, uint64_t *out)
{
	char *text;
	int err = tt_listing(fs, &text);
	*out = XXH64(text, strlen(text), 0);
	free(text);
	return err;
}

int tt_txn_cmd(struct txd_fs *fs, const char *name, const char *what)
{
	char path[600];
	uint64_t node;
	struct txd_open_out oo;
	snprintf(path, sizeof(path), ".txdir/txn/%s/ctl", name);
	int err = tt_resolve(fs, path, NULL, NULL, &node);
	if (err || (err = txd_open(fs, NULL, node, O_WRONLY | O_TRUNC, &oo)))
		return err;
	ssize_t n = txd_write(fs, NULL, oo.fh, what, strlen(what), 0);
	txd_release(fs, oo.fh);
	return n < 0 ? (int)n : 0;
}

int tt_txn_begin(struct txd_fs *fs, const char *name)
{
	char path[600];
	snprintf(path, sizeof(path), ".txdir/txn/%s", name);
	return tt_mkdir(fs, path);
}

int tt_txn_end(struct txd_fs *fs, const char *name)
{
	uint64_t txns;
	int err = tt_resolve(fs, ".txdir/txn", NULL, NULL, &txns);
	return err ? err : txd_rmdir(fs, NULL, txns, name);
}
