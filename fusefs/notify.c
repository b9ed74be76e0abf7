/*
 * notify.c — the notifier thread: the only place that calls
 * fuse_lowlevel_notify_inval_entry / notify_inval_inode.
 *
 * The engine's notify callbacks may run inside another txd_* call made by a
 * FUSE worker, while the kernel holds locks (a directory's i_rwsem) waiting
 * for that worker's reply; notifying synchronously there could deadlock. So
 * the callbacks only append to a FIFO queue, and this thread, which holds no
 * engine lock and serves no request, delivers the notes in order. Queued EINTR
 * replies for interrupted durability waits travel the same way (reply.c), and
 * so do the replies of deferred commits: queued after the invalidations their
 * commit queued, they reach the kernel after them.
 *
 * Lock order: `lock` is a leaf; nothing is called while holding it.
 * Notes queued before the session is attached wait for tx_notifier_attach.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "txdirfs.h"

enum note_kind { N_ENTRY, N_INODE, N_EINTR, N_WRITE };

struct tx_note {
	struct tx_note *next;
	enum note_kind kind;
	uint64_t node; /* N_ENTRY: parent */
	fuse_req_t req;
	size_t count; /* N_WRITE */
	char name[]; /* N_ENTRY only */
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct tx_note *head, **tail; /* FIFO */
	struct fuse_session *se;      /* NULL until attached */
	bool stop, running;
	pthread_t thread;
} q = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.cond = PTHREAD_COND_INITIALIZER,
	.tail = &q.head,
};

void tx_note_post(struct tx_note *n)
{
	n->next = NULL;
	pthread_mutex_lock(&q.lock);
	*q.tail = n;
	q.tail = &n->next;
	pthread_cond_signal(&q.cond);
	pthread_mutex_unlock(&q.lock);
}

static struct tx_note *note_new(enum note_kind kind, uint64_t node, size_t namelen)
{
	struct tx_note *n = calloc(1, sizeof(*n) + namelen + 1);

	if (n) {
		n->kind = kind;
		n->node = node;
	}
	return n;
}

struct tx_note *tx_note_eintr(fuse_req_t req)
{
	struct tx_note *n = note_new(N_EINTR, 0, 0);

	if (n)
		n->req = req;
	return n;
}

struct tx_note *tx_note_write(fuse_req_t req, size_t count)
{
	struct tx_note *n = note_new(N_WRITE, 0, 0);

	if (n) {
		n->req = req;
		n->count = count;
	}
	return n;
}

/* Engine callback: only queue. A lost note leaves a stale dentry for at most
 * its entry timeout, so allocation failure is logged, not fatal. */
static void on_inval_entry(void *arg, uint64_t parent, const char *name)
{
	size_t len = strlen(name);
	struct tx_note *n = note_new(N_ENTRY, parent, len);

	(void)arg;
	if (!n) {
		tx_log(LOG_ERR, "notify: out of memory, entry %s not invalidated", name);
		return;
	}
	memcpy(n->name, name, len + 1);
	tx_note_post(n);
}

static void on_inval_inode(void *arg, uint64_t node)
{
	struct tx_note *n = note_new(N_INODE, node, 0);

	(void)arg;
	if (!n) {
		tx_log(LOG_ERR, "notify: out of memory, node %llu not invalidated",
		       (unsigned long long)node);
		return;
	}
	tx_note_post(n);
}

static void deliver(struct fuse_session *se, struct tx_note *n)
{
	int rc = 0;

	switch (n->kind) {
	case N_ENTRY:
		rc = fuse_lowlevel_notify_inval_entry(se, n->node, n->name, strlen(n->name));
		break;
	case N_INODE:
		rc = fuse_lowlevel_notify_inval_inode(se, n->node, 0, 0);
		break;
	case N_EINTR:
		fuse_reply_err(n->req, EINTR);
		break;
	case N_WRITE:
		fuse_reply_write(n->req, n->count);
		break;
	}
	/* ENOENT: the kernel had nothing cached; ENODEV/EBADF: unmounting. */
	if (rc < 0 && rc != -ENOENT && rc != -ENODEV && rc != -EBADF)
		tx_log(LOG_WARNING, "notify: %s", strerror(-rc));
}

static void *notifier_main(void *arg)
{
	struct tx_note *n;

	(void)arg;
	pthread_mutex_lock(&q.lock);
	for (;;) {
		while (!q.stop && (!q.head || !q.se))
			pthread_cond_wait(&q.cond, &q.lock);
		if (q.stop && (!q.head || !q.se))
			break;
		n = q.head;
		q.head = n->next;
		if (!q.head)
			q.tail = &q.head;
		pthread_mutex_unlock(&q.lock);
		deliver(q.se, n);
		free(n);
		pthread_mutex_lock(&q.lock);
	}
	pthread_mutex_unlock(&q.lock);
	return NULL;
}

static void on_will_block(void *arg)
{
	(void)arg;
	tx_loop_detach();
}

int tx_notifier_start(struct txd_fs *fs)
{
	/* static: the engine may keep the pointer */
	static const struct txd_notify cb = {
		.inval_entry = on_inval_entry,
		.inval_inode = on_inval_inode,
		.will_block = on_will_block,
		.stats = tx_proto_stats,
		.arg = NULL,
	};
	int rc = pthread_create(&q.thread, NULL, notifier_main, NULL);

	if (rc)
		return -rc;
	q.running = true;
	txd_set_notify(fs, &cb);
	return 0;
}

void tx_notifier_attach(struct fuse_session *se)
{
	pthread_mutex_lock(&q.lock);
	q.se = se;
	pthread_cond_signal(&q.cond);
	pthread_mutex_unlock(&q.lock);
}

/* Delivers what is queued (if attached), then joins the thread. Notes that
 * can no longer be delivered are dropped. */
void tx_notifier_stop(void)
{
	struct tx_note *n;

	if (!q.running)
		return;
	pthread_mutex_lock(&q.lock);
	q.stop = true;
	pthread_cond_signal(&q.cond);
	pthread_mutex_unlock(&q.lock);
	pthread_join(q.thread, NULL);
	q.running = false;
	while ((n = q.head)) {
		q.head = n->next;
		free(n);
	}
	q.tail = &q.head;
}
