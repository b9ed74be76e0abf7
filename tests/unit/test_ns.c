/*
 * test_ns.c — the in-memory namespace (ns.h) against its invariants N1-N6,
 * driven through its own API: records built with rec.h and applied with
 * ns_apply, versions pinned and snapshots taken directly. N4 (directory
 * nlink) is the committer's job, so it is checked on a namespace built
 * through the engine (txd_*).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include "../../engine/core.h"
#include "../../engine/ns.h"
#include "../../engine/rec.h"
#include "../../engine/txdir.h"
#include "txdtest.h"

static struct ns ns;

static void setup(void)
{
	cr_assert_eq(ns_init(&ns), 0);
}

static void teardown(void)
{
	ns_destroy(&ns);
}

TestSuite(ns, .init = setup, .fini = teardown, .timeout = 60);

/* ---- helpers ------------------------------------------------------------ */

#define SEG 5
#define PAYLOAD_OFF 4096

static struct rec_buf rb;

static void begin(void)
{
	rec_init(&rb, 0, 0, 0);
}

/* Apply the record being built as commit c (it lives in WAL segment SEG at
 * PAYLOAD_OFF, for inline chunks). */
static int commit(uint64_t c)
{
	struct iovec iov[16];
	cr_assert_leq(rec_iov_count(&rb), 16);
	int n = rec_finish(&rb, iov);
	cr_assert_gt(n, 0);
	size_t total = 0;
	for (int k = 0; k < n; k++)
		total += iov[k].iov_len;
	uint8_t *p = malloc(total);
	cr_assert_not_null(p);
	for (size_t at = 0, k = 0; k < (size_t)n; at += iov[k].iov_len, k++)
		memcpy(p + at, iov[k].iov_base, iov[k].iov_len);
	int r = ns_apply(&ns, p, (uint32_t)total, SEG, PAYLOAD_OFF, c);
	free(p);
	rec_release(&rb);
	return r;
}

static struct rec_inode attrs(uint64_t ino, uint32_t mode, uint64_t parent)
{
	struct rec_inode r = {.ino = ino, .mode = mode, .nlink = S_ISDIR(mode) ? 2 : 1,
			      .parent = S_ISDIR(mode) ? parent : 0, .uid = 1, .gid = 2,
			      .mtime = {1000, 5}};
	return r;
}

static void put_inode(uint64_t ino, uint32_t mode, uint64_t parent)
{
	struct rec_inode r = attrs(ino, mode, parent);
	rec_inode(&rb, &r);
}

/* commit c: the root directory */
static void mkroot(uint64_t c)
{
	begin();
	put_inode(NS_ROOT_INO, S_IFDIR | 0755, NS_ROOT_INO);
	cr_assert_eq(commit(c), 0);
}

/* commit c: a new inode named parent/name */
static void mk(uint64_t c, uint64_t parent, const char *name, uint64_t ino, uint32_t mode)
{
	begin();
	put_inode(ino, mode, parent);
	rec_dent_set(&rb, parent, name, ino, 0);
	cr_assert_eq(commit(c), 0, "create %s", name);
}

/* commit c: change ino's mode bits (a whole OP_INODE, R2) */
static void chmod_at(uint64_t c, uint64_t ino, uint32_t mode)
{
	begin();
	struct rec_inode r = attrs(ino, mode, NS_ROOT_INO);
	rec_inode(&rb, &r);
	cr_assert_eq(commit(c), 0);
}

static struct dir *rootdir(void)
{
	struct inode *r = ns_inode(&ns, NS_ROOT_INO);
	cr_assert_not_null(r);
	cr_assert_not_null(r->dir);
	return r->dir;
}

static uint64_t head_ino(const char *name)
{
	struct dent *e = ns_dir_find(rootdir(), name, strlen(name));
	return e ? e->ino : 0;
}

static uint32_t chain_len(const struct inode *in)
{
	uint32_t n = 0;
	for (const struct iver *v = in->head; v; v = v->older)
		n++;
	return n;
}

/* ---- N1: pinned versions never change --------------------------------------- */

Test(ns, N1_unshared_head_is_modified_in_place)
{
	mkroot(1);
	mk(2, NS_ROOT_INO, "f", 2, S_IFREG | 0644);
	struct inode *in = ns_inode(&ns, 2);
	struct iver *v = in->head;
	uint64_t vno = v->vno;
	chmod_at(3, 2, S_IFREG | 0600);
	cr_assert_eq(in->head, v, "no pin, no snapshot: the head is reused");
	cr_assert_eq(v->mode, S_IFREG | 0600);
	cr_assert_eq(v->commit, 3);
	cr_assert_eq(v->vno, vno + 1, "a new commit is a new version number");
	cr_assert_null(v->older);
}

Test(ns, N1_pinned_head_is_copied_not_modified)
{
	mkroot(1);
	mk(2, NS_ROOT_INO, "f", 2, S_IFREG | 0644);
	struct inode *in = ns_inode(&ns, 2);
	struct iver *v1 = in->head;
	ns_iver_pin(v1);
	chmod_at(3, 2, S_IFREG | 0600);
	cr_assert_neq(in->head, v1, "N1: a pinned version was written in place");
	cr_assert_eq(v1->mode, S_IFREG | 0644, "N1: the pinned version changed");
	cr_assert_eq(v1->commit, 2);
	cr_assert_eq(in->head->mode, S_IFREG | 0600);
	cr_assert_eq(in->head->older, v1);
	cr_assert_eq(in->head->vno, v1->vno + 1);
	ns_iver_unpin(&ns, in, v1);
}

Test(ns, N1_head_seen_by_a_snapshot_is_copied)
{
	mkroot(1);
	mk(2, NS_ROOT_INO, "f", 2, S_IFREG | 0644);
	cr_assert_eq(ns_snapshot_take(&ns, 2), 0);
	struct inode *in = ns_inode(&ns, 2);
	struct iver *v1 = in->head;
	chmod_at(3, 2, S_IFREG | 0600);
	cr_assert_neq(in->head, v1, "N1: snapshot 2 sees the head; it was modified");
	cr_assert_eq(ns_iver_at(in, 2)->mode, S_IFREG | 0644);
	ns_snapshot_release(&ns, 2);
}

/* ---- N2: older versions live exactly as long as someone needs them ------------ */

Test(ns, N2_older_version_freed_on_last_unpin)
{
	mkroot(1);
	mk(2, NS_ROOT_INO, "f", 2, S_IFREG | 0644);
	struct inode *in = ns_inode(&ns, 2);
	uint64_t base = ns.nversions;
	struct iver *v1 = in->head;
	ns_iver_pin(v1);
	ns_iver_pin(v1);
	chmod_at(3, 2, S_IFREG | 0600);
	chmod_at(4, 2, S_IFREG | 0640);
	cr_assert_eq(chain_len(in), 2, "head and the pinned one; the unpinned middle is gone");
	cr_assert_eq(ns.nversions, base + 1);
	ns_iver_unpin(&ns, in, v1);
	cr_assert_eq(chain_len(in), 2, "N2: still pinned once");
	ns_iver_unpin(&ns, in, v1);
	cr_assert_eq(chain_len(in), 1, "N2: the last unpin did not free it");
	cr_assert_eq(ns.nversions, base);
}

Test(ns, N2_version_kept_while_a_snapshot_needs_it)
{
	mkroot(1);
	mk(2, NS_ROOT_INO, "f", 2, S_IFREG | 0644);
	struct inode *in = ns_inode(&ns, 2);
	cr_assert_eq(ns_snapshot_take(&ns, 3), 0); /* sees commit 2's version */
	chmod_at(4, 2, S_IFREG | 0600);
	chmod_at(5, 2, S_IFREG | 0640); /* head at 4 is needed by nobody */
	cr_assert_eq(chain_len(in), 2, "N2: kept only what snapshot 3 sees");
	cr_assert_eq(ns_iver_at(in, 3)->commit, 2);
	cr_assert(ns_snapshot_needs(&ns, 2, 4));
	cr_assert(!ns_snapshot_needs(&ns, 4, 5));
	ns_snapshot_release(&ns, 3);
	cr_assert_eq(chain_len(in), 1, "N2: the release did not free it");
	cr_assert_eq(ns.nversions, ns.ninodes);
}

Test(ns, N2_pinned_version_outlives_its_inode)
{
	mkroot(1);
	mk(2, NS_ROOT_INO, "f", 2, S_IFREG | 0644);
	struct inode *in = ns_inode(&ns, 2);
	struct iver *v = in->head;
	ns_iver_pin(v);
	begin();
	rec_dent_del(&rb, NS_ROOT_INO, "f");
	rec_free(&rb, 2);
	cr_assert_eq(commit(3), 0);
	cr_assert_null(ns_inode(&ns, 2));
	cr_assert_eq(v->mode, S_IFREG | 0644, "the detached version is still readable");
	ns_iver_unpin(&ns, NULL, v); /* frees it (ASan: no leak, no use after free) */
	cr_assert_eq(ns.nversions, ns.ninodes);
}

/* ---- N5, N6: directory bindings and snapshots ------------------------------- */

Test(ns, N5_removed_name_stays_visible_to_its_snapshot)
{
	mkroot(1);
	mk(2, NS_ROOT_INO, "a", 2, S_IFREG | 0644);
	cr_assert_eq(ns_snapshot_take(&ns, 2), 0);
	begin();
	rec_dent_del(&rb, NS_ROOT_INO, "a");
	cr_assert_eq(commit(3), 0);
	cr_assert_eq(head_ino("a"), 0, "N5: head lookups never see tombstones");
	cr_assert_null(ns_dir_next(rootdir(), 0));
	cr_assert_eq(rootdir()->count, 0);
	cr_assert_eq(ns_lookup_at(rootdir(), "a", 1, 2), 2, "N5: snapshot 2 lost its binding");
	uint64_t ino = 0;
	struct dent *e = ns_dir_next_at(rootdir(), 0, 2, &ino);
	cr_assert_not_null(e);
	cr_assert_eq(ino, 2);
	cr_assert_eq(ns_lookup_at(rootdir(), "a", 1, 3), 0);
	cr_assert_gt(ns.mvcc_items, 0);
	ns_snapshot_release(&ns, 2);
	cr_assert_eq(ns.mvcc_items, 0, "N5: the release left %lu items",
		     (unsigned long)ns.mvcc_items);
	cr_assert_eq(ns_lookup_at(rootdir(), "a", 1, 2), 0);
}

Test(ns, N5_rebound_name_keeps_the_old_binding_for_the_snapshot)
{
	mkroot(1);
	mk(2, NS_ROOT_INO, "a", 2, S_IFREG | 0644);
	mk(3, NS_ROOT_INO, "b", 3, S_IFREG | 0644);
	cr_assert_eq(ns_snapshot_take(&ns, 3), 0);
	/* rename b over a at commit 4 */
	begin();
	rec_dent_set(&rb, NS_ROOT_INO, "a", 3, 0);
	rec_dent_del(&rb, NS_ROOT_INO, "b");
	struct rec_inode dead = attrs(2, S_IFREG | 0644, 0);
	dead.nlink = 0;
	rec_inode(&rb, &dead);
	cr_assert_eq(commit(4), 0);
	cr_assert_eq(head_ino("a"), 3);
	cr_assert_eq(head_ino("b"), 0);
	cr_assert_eq(ns_lookup_at(rootdir(), "a", 1, 3), 2);
	cr_assert_eq(ns_lookup_at(rootdir(), "b", 1, 3), 3);
	cr_assert_eq(ns_lookup_at(rootdir(), "a", 1, 4), 3);
	/* the unlinked inode 2 is still there for snapshot 3 */
	cr_assert_not_null(ns_inode(&ns, 2));
	cr_assert_eq(ns_iver_at(ns_inode(&ns, 2), 3)->nlink, 1);
	ns_snapshot_release(&ns, 3);
	cr_assert_null(ns_inode(&ns, 2), "the last release drops unlinked inodes");
	cr_assert_eq(ns.mvcc_items, 0);
}

Test(ns, N6_snapshot_sees_exactly_its_commit)
{
	mkroot(1);
	mk(2, NS_ROOT_INO, "a", 2, S_IFREG | 0644);
	cr_assert_eq(ns_snapshot_take(&ns, 2), 0);
	mk(3, NS_ROOT_INO, "b", 3, S_IFREG | 0644);
	chmod_at(4, 2, S_IFREG | 0600);
	cr_assert_null(ns_iver_at(ns_inode(&ns, 3), 2), "N6: b did not exist at 2");
	cr_assert_eq(ns_lookup_at(rootdir(), "b", 1, 2), 0);
	cr_assert_eq(ns_iver_at(ns_inode(&ns, 2), 2)->mode, S_IFREG | 0644);
	cr_assert_eq(ns_iver_at(ns_inode(&ns, 2), 4)->mode, S_IFREG | 0600);
	uint64_t ino, n = 0, after = 0;
	for (struct dent *e; (e = ns_dir_next_at(rootdir(), after, 2, &ino)); after = e->cookie)
		n++;
	cr_assert_eq(n, 1, "N6: snapshot 2 lists %lu entries", (unsigned long)n);
	ns_snapshot_release(&ns, 2);
	ns_snapshot_release(&ns, 2); /* not registered: ignored */
	cr_assert_eq(ns.nsnaps, 0);
	cr_assert_eq(ns.newest_snapshot, 0);
}

Test(ns, N6_snapshots_register_in_order_and_release_any_order)
{
	uint64_t s[] = {7, 3, 9, 3, 5};
	for (size_t k = 0; k < 5; k++)
		cr_assert_eq(ns_snapshot_take(&ns, s[k]), 0);
	cr_assert_eq(ns.nsnaps, 5);
	for (uint32_t k = 1; k < ns.nsnaps; k++)
		cr_assert_leq(ns.snaps[k - 1], ns.snaps[k]);
	cr_assert_eq(ns.newest_snapshot, 9);
	ns_snapshot_release(&ns, 9);
	cr_assert_eq(ns.newest_snapshot, 7);
	ns_snapshot_release(&ns, 3);
	cr_assert(ns_snapshot_needs(&ns, 3, 4), "the second registration of 3 remains");
	ns_snapshot_release(&ns, 3);
	cr_assert(!ns_snapshot_needs(&ns, 3, 5));
	cr_assert(ns_snapshot_needs(&ns, 3, 6));
}

/* Tombstones fill a directory's cookie order while a snapshot holds them; a
 * new entry must still find room. */
Test(ns, N5_directory_full_of_tombstones_takes_new_entries)
{
	char name[16];
	mkroot(1);
	begin();
	for (int k = 0; k < 8; k++) {
		snprintf(name, sizeof(name), "f%d", k);
		put_inode(10 + k, S_IFREG | 0644, 0);
		rec_dent_set(&rb, NS_ROOT_INO, name, 10 + k, 0);
	}
	cr_assert_eq(commit(2), 0);
	cr_assert_eq(ns_snapshot_take(&ns, 2), 0);
	begin();
	for (int k = 0; k < 6; k++) {
		snprintf(name, sizeof(name), "f%d", k);
		rec_dent_del(&rb, NS_ROOT_INO, name);
	}
	cr_assert_eq(commit(3), 0);
	for (int k = 0; k < 20; k++) {
		snprintf(name, sizeof(name), "g%d", k);
		mk(4 + k, NS_ROOT_INO, name, 100 + k, S_IFREG | 0644);
	}
	cr_assert_leq(rootdir()->norder, rootdir()->caporder);
	uint64_t n = 0, last = 0;
	for (struct dent *e = ns_dir_next(rootdir(), 0); e; e = ns_dir_next(rootdir(), e->cookie)) {
		cr_assert_gt(e->cookie, last);
		last = e->cookie;
		n++;
	}
	cr_assert_eq(n, 22);
	ns_snapshot_release(&ns, 2);
	for (int k = 0; k < 8; k++) {
		snprintf(name, sizeof(name), "f%d", k);
		cr_assert_eq(head_ino(name), k < 6 ? 0 : 10 + (uint64_t)k);
	}
}

/* ---- N3: cookies --------------------------------------------------------------- */

Test(ns, N3_cookies_in_apply_order_stable_for_life)
{
	mkroot(1);
	mk(2, NS_ROOT_INO, "a", 2, S_IFREG | 0644);
	mk(3, NS_ROOT_INO, "b", 3, S_IFREG | 0644);
	struct dent *a = ns_dir_find(rootdir(), "a", 1);
	struct dent *b = ns_dir_find(rootdir(), "b", 1);
	cr_assert_eq(a->cookie, 3, "1 and 2 are . and ..");
	cr_assert_eq(b->cookie, 4);
	/* rebinding a keeps its cookie */
	begin();
	rec_dent_set(&rb, NS_ROOT_INO, "a", 3, 0);
	rec_dent_del(&rb, NS_ROOT_INO, "b");
	cr_assert_eq(commit(4), 0);
	cr_assert_eq(ns_dir_find(rootdir(), "a", 1)->cookie, 3, "N3: a rebound name moved");
	/* a cookie from the record (checkpoint, transaction) is used and moves
	 * next_cookie past it */
	begin();
	put_inode(9, S_IFREG | 0644, 0);
	rec_dent_set(&rb, NS_ROOT_INO, "z", 9, 40);
	cr_assert_eq(commit(5), 0);
	cr_assert_eq(ns_dir_find(rootdir(), "z", 1)->cookie, 40);
	mk(6, NS_ROOT_INO, "y", 10, S_IFREG | 0644);
	cr_assert_eq(ns_dir_find(rootdir(), "y", 1)->cookie, 41);
}

Test(ns, N3_cookie_out_of_order_is_corrupt)
{
	mkroot(1);
	begin();
	put_inode(2, S_IFREG | 0644, 0);
	put_inode(3, S_IFREG | 0644, 0);
	rec_dent_set(&rb, NS_ROOT_INO, "a", 2, 50);
	rec_dent_set(&rb, NS_ROOT_INO, "b", 3, 49);
	cr_assert_eq(commit(2), -TXD_ECORRUPT);
}

Test(ns, N3_replay_assigns_the_same_cookies)
{
	char name[16];
	struct ns live;
	mkroot(1);
	for (int k = 0; k < 300; k++) {
		snprintf(name, sizeof(name), "n%d", k);
		mk(2 + k, NS_ROOT_INO, name, 10 + k, S_IFREG | 0644);
		if (k % 3 == 0) {
			snprintf(name, sizeof(name), "n%d", k / 2);
			begin();
			rec_dent_del(&rb, NS_ROOT_INO, name);
			cr_assert_eq(commit(1000 + k), 0);
		}
	}
	/* the same records once more into a second namespace */
	live = ns;
	cr_assert_eq(ns_init(&ns), 0);
	mkroot(1);
	for (int k = 0; k < 300; k++) {
		snprintf(name, sizeof(name), "n%d", k);
		mk(2 + k, NS_ROOT_INO, name, 10 + k, S_IFREG | 0644);
		if (k % 3 == 0) {
			snprintf(name, sizeof(name), "n%d", k / 2);
			begin();
			rec_dent_del(&rb, NS_ROOT_INO, name);
			cr_assert_eq(commit(1000 + k), 0);
		}
	}
	struct dir *a = ns_inode(&live, NS_ROOT_INO)->dir, *b = rootdir();
	cr_assert_eq(a->count, b->count);
	struct dent *x = ns_dir_next(a, 0), *y = ns_dir_next(b, 0);
	for (; x && y; x = ns_dir_next(a, x->cookie), y = ns_dir_next(b, y->cookie)) {
		cr_assert_str_eq(x->name, y->name);
		cr_assert_eq(x->cookie, y->cookie, "N3: %s", x->name);
	}
	cr_assert(!x && !y);
	ns_destroy(&live);
}

/* ---- N4: directory nlink (kept by the committer, checked on the engine) -------- */

static int check_nlink(void *arg, struct inode *in)
{
	struct ns *n = arg;
	if (!in->dir || !in->head->nlink)
		return 0; /* a removed directory waiting for its last reference */
	uint32_t subdirs = 0;
	for (struct dent *e = ns_dir_next(in->dir, 0); e; e = ns_dir_next(in->dir, e->cookie)) {
		struct inode *c = ns_inode(n, e->ino);
		cr_assert_not_null(c);
		if (S_ISDIR(c->head->mode))
			subdirs++;
	}
	cr_expect_eq(in->head->nlink, 2 + subdirs, "N4: ino %lu has nlink %u, %u subdirs",
		     (unsigned long)in->ino, in->head->nlink, subdirs);
	return 0;
}

Test(ns, N4_directory_nlink_is_two_plus_subdirectories)
{
	char *store = tt_mkstore();
	struct txd_fs *fs;
	cr_assert_eq(txd_fs_open(store, NULL, &fs, NULL), 0);
	cr_assert_eq(tt_mkdir(fs, "a"), 0);
	cr_assert_eq(tt_mkdir(fs, "a/b"), 0);
	cr_assert_eq(tt_mkdir(fs, "a/c"), 0);
	cr_assert_eq(tt_mkdir(fs, "d"), 0);
	cr_assert_eq(tt_put(fs, "a/f", "x", 1), 0);
	cr_assert_eq(tt_rename(fs, "a/c", "d/c", 0), 0);
	cr_assert_eq(tt_rename(fs, "a/b", "a/b2", 0), 0);
	cr_assert_eq(tt_mkdir(fs, "e"), 0);
	cr_assert_eq(tt_rename(fs, "d", "e", 0), 0, "a directory over an empty one");
	ns_walk(&fs->ns, check_nlink, &fs->ns);
	txd_fs_close(fs);
	cr_assert_eq(txd_fs_open(store, NULL, &fs, NULL), 0);
	ns_walk(&fs->ns, check_nlink, &fs->ns); /* and after a checkpoint load */
	txd_fs_close(fs);
	tt_rmtree(store);
	free(store);
}

/* ---- content, xattrs, symlinks ------------------------------------------------- */

Test(ns, content_inline_chunk_lands_in_the_wal_segment)
{
	static const char data[] = "chunk bytes";
	mkroot(1);
	mk(2, NS_ROOT_INO, "f", 2, S_IFREG | 0644);
	begin();
	struct wcopy_change c = {.idx = 1, .data = data, .len = sizeof(data), .csum = 77};
	rec_content(&rb, 2, TXD_CHUNK_SIZE + sizeof(data), false, 0, &c, 1);
	uint64_t data_off = rb.len; /* inline data starts after the ops */
	cr_assert_eq(commit(3), 0);
	struct iver *v = ns_inode(&ns, 2)->head;
	cr_assert_eq(v->size, TXD_CHUNK_SIZE + sizeof(data));
	struct chunk_loc loc;
	const struct chunk *ch = cmap_get(v->map, 1);
	cr_assert_not_null(ch);
	chunk_get_loc(ch, &loc);
	cr_assert_eq(loc.file, CHUNK_FILE_WAL | SEG);
	cr_assert_eq(loc.off, PAYLOAD_OFF + data_off);
	cr_assert_eq(loc.len, sizeof(data));
	cr_assert_eq(loc.csum, 77);
	cr_assert_null(cmap_get(v->map, 0), "chunk 0 is a hole");
}

Test(ns, xattrs_set_replace_delete)
{
	uint32_t len;
	mkroot(1);
	mk(2, NS_ROOT_INO, "f", 2, S_IFREG | 0644);
	begin();
	rec_xattr_set(&rb, 2, "user.a", "one", 3);
	rec_xattr_set(&rb, 2, "user.b", "", 0);
	rec_xattr_set(&rb, 2, "user.a", "three", 5);
	cr_assert_eq(commit(3), 0);
	const struct xattrs *xa = ns_inode(&ns, 2)->head->xa;
	const uint8_t *p = xattrs_get(xa, "user.a", &len);
	cr_assert_not_null(p);
	cr_assert_eq(len, 5);
	cr_assert_eq(memcmp(p, "three", 5), 0);
	cr_assert_not_null(xattrs_get(xa, "user.b", &len));
	cr_assert_eq(len, 0);
	cr_assert_null(xattrs_get(xa, "user.c", &len));
	begin();
	rec_xattr_del(&rb, 2, "user.a");
	rec_xattr_del(&rb, 2, "user.b");
	cr_assert_eq(commit(4), 0);
	cr_assert_null(ns_inode(&ns, 2)->head->xa, "the last xattr gone: no blob");
}

Test(ns, symlink_target_and_size)
{
	mkroot(1);
	begin();
	struct rec_inode r = attrs(2, S_IFLNK | 0777, 0);
	r.target = "../elsewhere";
	r.target_len = 12;
	rec_inode(&rb, &r);
	rec_dent_set(&rb, NS_ROOT_INO, "l", 2, 0);
	cr_assert_eq(commit(2), 0);
	struct iver *v = ns_inode(&ns, 2)->head;
	cr_assert_str_eq(v->target, "../elsewhere");
	cr_assert_eq(v->size, 12);
}

/* ---- records that do not fit the namespace -------------------------------------- */

Test(ns, apply_refuses_ops_that_do_not_fit)
{
	mkroot(1);
	mk(2, NS_ROOT_INO, "f", 2, S_IFREG | 0644);
	mk(3, NS_ROOT_INO, "d", 3, S_IFDIR | 0755);
	struct wcopy_change c = {.idx = 0, .len = 0};

	begin();
	rec_dent_set(&rb, 99, "x", 2, 0);
	cr_assert_eq(commit(10), -TXD_ECORRUPT, "entry in a missing directory");
	begin();
	rec_dent_set(&rb, 2, "x", 2, 0);
	cr_assert_eq(commit(10), -TXD_ECORRUPT, "entry in a regular file");
	begin();
	rec_dent_set(&rb, NS_ROOT_INO, "x", 99, 0);
	cr_assert_eq(commit(10), -TXD_ECORRUPT, "entry naming a missing inode");
	begin();
	rec_dent_del(&rb, NS_ROOT_INO, "nope");
	cr_assert_eq(commit(10), -TXD_ECORRUPT, "removing a missing name");
	begin();
	rec_content(&rb, 99, 0, true, 0, &c, 1);
	cr_assert_eq(commit(10), -TXD_ECORRUPT, "content of a missing inode");
	begin();
	rec_content(&rb, 3, 0, true, 0, &c, 1);
	cr_assert_eq(commit(10), -TXD_ECORRUPT, "content of a directory");
	begin();
	rec_xattr_set(&rb, 99, "user.a", "v", 1);
	cr_assert_eq(commit(10), -TXD_ECORRUPT, "xattr of a missing inode");
	begin();
	rec_free(&rb, 99);
	cr_assert_eq(commit(10), -TXD_ECORRUPT, "freeing a missing inode");
	begin();
	rec_version(&rb, 99, 1, 1);
	cr_assert_eq(commit(10), -TXD_ECORRUPT, "version of a missing inode");
	begin();
	put_inode(2, S_IFDIR | 0755, NS_ROOT_INO);
	cr_assert_eq(commit(10), -TXD_ECORRUPT, "a file that changes type");
	/* and a malformed one (R1, rec.h) */
	uint8_t junk[REC_HDR_SIZE + 4] = {0};
	junk[20] = 1; /* one op, no room for it */
	cr_assert_eq(ns_apply(&ns, junk, sizeof(junk), 0, 0, 10), -TXD_ECORRUPT);
	cr_assert_eq(head_ino("f"), 2);
}

Test(ns, free_of_a_pinned_inode_is_deferred)
{
	mkroot(1);
	mk(2, NS_ROOT_INO, "f", 2, S_IFREG | 0644);
	struct inode *in = ns_inode(&ns, 2);
	in->pins = 1; /* a node refers to it (fs.c) */
	begin();
	rec_dent_del(&rb, NS_ROOT_INO, "f");
	rec_free(&rb, 2);
	cr_assert_eq(commit(3), 0);
	cr_assert_null(ns_inode(&ns, 2), "unhashed");
	cr_assert(in->freed);
	in->pins = 0;
	ns_inode_drop(&ns, in);
}

Test(ns, drop_unlinked_keeps_root_linked_and_pinned)
{
	mkroot(1);
	mk(2, NS_ROOT_INO, "f", 2, S_IFREG | 0644);
	begin();
	struct rec_inode r = attrs(3, S_IFREG | 0644, 0);
	r.nlink = 0;
	rec_inode(&rb, &r);
	r.ino = 4;
	rec_inode(&rb, &r);
	cr_assert_eq(commit(2), 0);
	ns_inode(&ns, 4)->pins = 1;
	ns_drop_unlinked(&ns);
	cr_assert_not_null(ns_inode(&ns, NS_ROOT_INO));
	cr_assert_not_null(ns_inode(&ns, 2));
	cr_assert_null(ns_inode(&ns, 3));
	cr_assert_not_null(ns_inode(&ns, 4));
	ns_inode(&ns, 4)->pins = 0;
}

/* ---- import, paths, scale -------------------------------------------------------- */

Test(ns, import_copies_the_snapshot_state_with_cookies)
{
	struct ns priv;
	struct inode *out;
	mkroot(1);
	mk(2, NS_ROOT_INO, "a", 2, S_IFREG | 0644);
	mk(3, NS_ROOT_INO, "b", 3, S_IFREG | 0644);
	cr_assert_eq(ns_snapshot_take(&ns, 3), 0);
	begin();
	rec_dent_del(&rb, NS_ROOT_INO, "a");
	cr_assert_eq(commit(4), 0);
	mk(5, NS_ROOT_INO, "c", 4, S_IFREG | 0644);
	cr_assert_eq(ns_init(&priv), 0);
	cr_assert_eq(ns_import(&priv, ns_inode(&ns, NS_ROOT_INO), 3, &out), 0);
	cr_assert_not_null(out->dir);
	cr_assert_eq(out->dir->count, 2, "the entries snapshot 3 sees");
	cr_assert_eq(ns_dir_find(out->dir, "a", 1)->cookie, 3, "cookies are imported");
	cr_assert_eq(ns_dir_find(out->dir, "b", 1)->cookie, 4);
	cr_assert_null(ns_dir_find(out->dir, "c", 1));
	cr_assert_eq(ns_import(&priv, ns_inode(&ns, 4), 3, &out), -ENOENT, "c is newer than 3");
	ns_destroy(&priv);
	ns_snapshot_release(&ns, 3);
}

Test(ns, path_names_every_level)
{
	char buf[256];
	mkroot(1);
	mk(2, NS_ROOT_INO, "a", 2, S_IFDIR | 0755);
	mk(3, 2, "b", 3, S_IFDIR | 0755);
	mk(4, 3, "file", 4, S_IFREG | 0644);
	ns_path(&ns, ns_inode(&ns, 4), buf, sizeof(buf));
	cr_assert_str_eq(buf, "/a/b/file");
	ns_path(&ns, ns_inode(&ns, NS_ROOT_INO), buf, sizeof(buf));
	cr_assert_str_eq(buf, "/");
	ns_path(&ns, ns_inode(&ns, 4), buf, 6);
	cr_assert_eq(strlen(buf), 5, "truncated to the buffer");
}

Test(ns, many_inodes_and_entries_grow_and_shrink)
{
	char name[16];
	mkroot(1);
	enum { N = 5000 };
	for (int k = 0; k < N; k++) {
		snprintf(name, sizeof(name), "e%d", k);
		mk(2 + k, NS_ROOT_INO, name, 10 + k, S_IFREG | 0644);
	}
	cr_assert_eq(ns.ninodes, N + 1);
	cr_assert_geq(ns.tabsize, N + 1);
	for (int k = 0; k < N; k += 2) {
		snprintf(name, sizeof(name), "e%d", k);
		begin();
		rec_dent_del(&rb, NS_ROOT_INO, name);
		rec_free(&rb, 10 + k);
		cr_assert_eq(commit(10000 + k), 0);
	}
	for (int k = 0; k < 100; k++) { /* appends after deletes: compaction */
		snprintf(name, sizeof(name), "n%d", k);
		mk(20000 + k, NS_ROOT_INO, name, 100000 + k, S_IFREG | 0644);
	}
	uint64_t n = 0, last = 0;
	for (struct dent *e = ns_dir_next(rootdir(), 0); e; e = ns_dir_next(rootdir(), e->cookie)) {
		cr_assert_gt(e->cookie, last);
		last = e->cookie;
		n++;
	}
	cr_assert_eq(n, N / 2 + 100);
	cr_assert_eq(rootdir()->count, N / 2 + 100);
	for (int k = 1; k < N; k += 2)
		cr_assert_not_null(ns_inode(&ns, 10 + k));
	cr_assert_eq(ns.next_ino, 100100, "next_ino follows the highest inode");
}

/* The same through the engine: a transaction's snapshot keeps the removed
 * names of a full directory as tombstones while the main tree adds more. */
Test(ns, N5_engine_removes_and_adds_under_an_open_transaction)
{
	char *store = tt_mkstore(), path[64];
	struct txd_fs *fs;
	cr_assert_eq(txd_fs_open(store, NULL, &fs, NULL), 0);
	cr_assert_eq(tt_mkdir(fs, "d"), 0);
	for (int k = 0; k < 8; k++) {
		snprintf(path, sizeof(path), "d/f%d", k);
		cr_assert_eq(tt_put(fs, path, "x", 1), 0);
	}
	cr_assert_eq(tt_mkdir(fs, ".txdir/txn/t"), 0); /* registers a snapshot */
	for (int k = 0; k < 6; k++) {
		snprintf(path, sizeof(path), "d/f%d", k);
		cr_assert_eq(tt_unlink(fs, path), 0);
	}
	for (int k = 0; k < 20; k++) {
		snprintf(path, sizeof(path), "d/g%d", k);
		cr_assert_eq(tt_put(fs, path, "y", 1), 0);
	}
	char *list;
	cr_assert_eq(tt_listing(fs, &list), 0);
	cr_assert_not_null(strstr(list, "d/g19"));
	cr_assert_null(strstr(list, "d/f0"));
	free(list);
	uint64_t before, after;
	cr_assert_eq(tt_fingerprint(fs, &before), 0);
	txd_fs_close(fs);
	cr_assert_eq(txd_fs_open(store, NULL, &fs, NULL), 0);
	cr_assert_eq(tt_fingerprint(fs, &after), 0);
	cr_assert_eq(before, after);
	txd_fs_close(fs);
	tt_rmtree(store);
	free(store);
}

/* ---- N8: a commit prepared before the lock ------------------------------------ */
static int by_ino(const void *a, const void *b)
{
	const struct inode *x = *(struct inode *const *)a, *y = *(struct inode *const *)b;
	return x->ino < y->ino ? -1 : x->ino > y->ino;
}

/* Everything of a namespace a reader or a later commit can see, as text. */
static char *dump(struct ns *n)
{
	struct inode **v = calloc(n->ninodes + 1, sizeof(*v));
	size_t nv = 0, cap = 1 << 16, at = 0;
	char *out = malloc(cap);
	cr_assert(v && out);
	for (uint64_t k = 0; k < n->tabsize; k++)
		for (struct inode *in = n->tab[k]; in; in = in->hnext)
			v[nv++] = in;
	qsort(v, nv, sizeof(*v), by_ino);
	for (size_t k = 0; k < nv; k++) {
		const struct inode *in = v[k];
		const struct iver *h = in->head;
		char line[1024];
		int w = snprintf(line, sizeof(line),
				 "ino %llu c%llu v%llu m%o u%u n%u s%llu d%llx st%llu p%llu name %s@%llu "
				 "xa %u older %d\n",
				 (unsigned long long)in->ino, (unsigned long long)h->commit,
				 (unsigned long long)h->vno, h->mode, h->uid, h->nlink,
				 (unsigned long long)h->size, (unsigned long long)h->dsum,
				 (unsigned long long)h->stored, (unsigned long long)in->parent,
				 in->name ? in->name->name : "-", (unsigned long long)in->name_parent,
				 h->xa ? h->xa->len : 0, h->older != NULL);
		for (uint32_t j = 0; in->dir && j < in->dir->norder; j++) {
			const struct dent *e = in->dir->order[j];
			if (e && w < (int)sizeof(line) - 100)
				w += snprintf(line + w, sizeof(line) - w, "  %s=%llu #%llu c%llu\n",
					      e->name, (unsigned long long)e->ino,
					      (unsigned long long)e->cookie, (unsigned long long)e->commit);
		}
		while (at + (size_t)w + 1 > cap)
			cr_assert_not_null(out = realloc(out, cap *= 2));
		memcpy(out + at, line, (size_t)w + 1);
		at += (size_t)w;
	}
	free(v);
	return out;
}

static bool fresh_from_100(void *arg, uint64_t ino)
{
	(void)arg;
	return ino >= 100;
}

/* The record of a transaction-like commit: new directory n with files
 * (content in a pack, an xattr, a rename and an unlink inside it), new
 * files in the existing directory a, and a directory attribute change of a
 * (applied after the link). */
static void big_record(struct rec_buf *b, bool hard_link)
{
	char name[32];
	put_inode(100, S_IFDIR | 0755, NS_ROOT_INO);
	rec_dent_set(b, NS_ROOT_INO, "n", 100, 0);
	for (int k = 0; k < 40; k++) {
		snprintf(name, sizeof(name), "f%d", k);
		put_inode(200 + k, S_IFREG | 0644, 0);
		rec_dent_set(b, 100, name, 200 + k, 0);
		struct wcopy_change c = {.idx = 0, .len = 10 + k, .csum = 1000 + k,
					 .loc = {.file = 3, .off = 4096u * k, .len = 10 + k,
						 .csum = 1000 + k}};
		rec_content(b, 200 + k, 10 + k, false, 0, &c, 1);
		snprintf(name, sizeof(name), "g%d", k);
		put_inode(300 + k, S_IFREG | 0600, 0);
		rec_dent_set(b, 2, name, 300 + k, 0);
	}
	rec_xattr_set(b, 205, "user.k", "v", 1);
	rec_dent_del(b, 100, "f3");
	rec_dent_set(b, 100, "f3-renamed", 203, 0);
	rec_dent_del(b, 100, "f4");
	if (hard_link)
		rec_dent_set(b, 2, "link-to-f7", 207, 0); /* staged and main names */
	struct rec_inode r = attrs(2, S_IFDIR | 0700, NS_ROOT_INO);
	rec_inode(b, &r);
}

static char *apply_big(struct ns *n, bool prepared, bool hard_link, uint64_t *staged)
{
	struct rec_buf saved = rb;
	begin();
	big_record(&rb, hard_link);
	struct iovec iov[2];
	cr_assert_eq(rec_finish(&rb, iov), 1);
	struct ns_prep *p = NULL;
	if (prepared)
		cr_assert_eq(ns_prepare(rb.ops, (uint32_t)rb.len, fresh_from_100, NULL, &p), 0);
	*staged = ns_prep_count(p);
	cr_assert_eq(ns_apply_prepared(n, rb.ops, (uint32_t)rb.len, 1, 0, 7, p), 0);
	ns_prep_free(p);
	rec_release(&rb);
	rb = saved;
	return dump(n);
}

static void base_tree(void)
{
	mkroot(1);
	mk(2, NS_ROOT_INO, "a", 2, S_IFDIR | 0755);
	mk(3, 2, "old", 3, S_IFREG | 0644);
}

Test(ns, N8_prepared_commit_equals_the_plain_apply)
{
	for (int hard = 0; hard < 2; hard++) {
		base_tree(); /* ns: plain */
		uint64_t staged;
		char *plain = apply_big(&ns, false, hard, &staged);
		ns_destroy(&ns);
		cr_assert_eq(ns_init(&ns), 0);
		base_tree();
		char *prep = apply_big(&ns, true, hard, &staged);
		if (hard)
			cr_expect_eq(staged, 0, "a record the stage cannot build is not prepared");
		else
			cr_expect_eq(staged, 1 + 40 + 40, "n, its files and a's new files staged");
		cr_expect_str_eq(prep, plain, "prepared:\n%s\nplain:\n%s", prep, plain);
		free(plain);
		free(prep);
		ns_destroy(&ns);
		cr_assert_eq(ns_init(&ns), 0);
	}
}

Test(ns, N8_prepared_inode_that_exists_is_refused_whole)
{
	base_tree();
	begin();
	put_inode(3, S_IFREG | 0644, 0); /* exists: the predicate lies */
	rec_dent_set(&rb, 2, "again", 3, 0);
	struct iovec iov[2];
	cr_assert_eq(rec_finish(&rb, iov), 1);
	struct ns_prep *p = NULL;
	cr_assert_eq(ns_prepare(rb.ops, (uint32_t)rb.len, fresh_from_100, NULL, &p), 0);
	cr_expect_null(p, "3 is not fresh: nothing staged");
	ns_prep_free(p);
	rec_release(&rb);
	begin();
	put_inode(150, S_IFREG | 0644, 0);
	put_inode(3, S_IFREG | 0600, 0);
	cr_assert_eq(rec_finish(&rb, iov), 1);
	cr_assert_eq(ns_prepare(rb.ops, (uint32_t)rb.len, fresh_from_100, NULL, &p), 0);
	cr_assert_not_null(p);
	struct rec_buf staged = rb; /* mk builds its own record in rb */
	memset(&rb, 0, sizeof(rb));
	mk(4, 2, "taken", 150, S_IFREG | 0644); /* 150 appears meanwhile */
	char *before = dump(&ns);
	cr_expect_eq(ns_apply_prepared(&ns, staged.ops, (uint32_t)staged.len, 1, 0, 9, p),
		     -TXD_ECORRUPT);
	char *after = dump(&ns);
	cr_expect_str_eq(after, before, "nothing applied");
	free(before);
	free(after);
	ns_prep_free(p);
	rec_release(&staged);
	rec_release(&rb);
}
