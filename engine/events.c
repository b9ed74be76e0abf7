/*
 * events.c — the event log (events.h): an append-only file of
 * "<time_ns> <json>" lines, rendered when .txdir/events is opened.
 */
#include "events.h"
#include "json.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "os.h"

#define EV_FILE "events.log"

struct evlog {
	pthread_mutex_t lock; /* leaf (events.h) */
	char *dir, *path;
	int fd;
	uint64_t size;        /* bytes of whole lines in the file */
	uint64_t last_commit; /* highest txn_commit "commit" logged */
	struct ev_observer obs; /* journal.h's index; set once, before use */
};

/* ---- syslog: one connection, kept ------------------------------------------
 * syslog(3) connects to /dev/log at its first call and again at every call
 * while that fails (no syslog daemon: a socket, a failed connect and a close
 * per event, on the thread that answers the lease request). Events keep
 * their own datagram socket instead: connected once, reconnected when a
 * send finds the peer gone, and while /dev/log is missing a connect is
 * tried at most once a second. Sends never block (MSG_DONTWAIT): a line
 * syslog cannot take now is dropped from syslog only (the event log has
 * it). The line is what syslog(3) sends: "<PRI>Mmm dd hh:mm:ss IDENT[PID]:
 * MSG", facility daemon. */
#define EV_SYSLOG_RETRY_NS 1000000000ull

static struct {
	pthread_mutex_t lock;       /* a leaf, taken after nothing */
	int fd;                     /* -1: not connected */
	uint64_t next_try_ns;       /* monotonic: no connect before */
	char path[108];
} sl = {PTHREAD_MUTEX_INITIALIZER, -1, 0, "/dev/log"};

void ev_syslog_path(const char *path)
{
	pthread_mutex_lock(&sl.lock);
	if (sl.fd >= 0)
		close(sl.fd);
	sl.fd = -1;
	sl.next_try_ns = 0;
	snprintf(sl.path, sizeof(sl.path), "%s", path ? path : "/dev/log");
	pthread_mutex_unlock(&sl.lock);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Under sl.lock: connect unless connected or a connect failed < 1 s ago. */
static bool sl_connect(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	uint64_t now;

	if (sl.fd >= 0)
		return true;
	now = mono_ns();
	if (now < sl.next_try_ns)
		return false;
	memcpy(sa.sun_path, sl.path, sizeof(sl.path));
	sl.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (sl.fd >= 0 && connect(sl.fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		return true;
	if (sl.fd >= 0)
		close(sl.fd);
	sl.fd = -1;
	sl.next_try_ns = now + EV_SYSLOG_RETRY_NS;
	return false;
}

static void ev_syslog(int pri, const char *msg)
{
	char head[96];
	struct tm tm;
	time_t t = time(NULL);

	localtime_r(&t, &tm);
	size_t n = strftime(head, sizeof(head), "%h %e %T ", &tm);
	snprintf(head + n, sizeof(head) - n, "%s[%d]: ", program_invocation_short_name,
		 (int)getpid());
	char *line;
	int len = asprintf(&line, "<%d>%s%s", LOG_DAEMON | pri, head, msg);
	if (len < 0)
		return;
	pthread_mutex_lock(&sl.lock);
	for (int attempt = 0; attempt < 2 && sl_connect(); attempt++) {
		if (send(sl.fd, line, (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0 ||
		    (errno != ECONNREFUSED && errno != ENOTCONN && errno != EPIPE))
			break; /* sent, or dropped (full, too big): stay connected */
		close(sl.fd); /* the daemon went away: once more, anew */
		sl.fd = -1;
	}
	pthread_mutex_unlock(&sl.lock);
	free(line);
}

void ev_set_observer(struct evlog *ev, const struct ev_observer *obs)
{
	if (obs)
		ev->obs = *obs;
	else
		memset(&ev->obs, 0, sizeof(ev->obs));
}

void ev_rfc3339(uint64_t ns, char *buf, size_t cap)
{
	time_t t = (time_t)(ns / 1000000000ull);
	struct tm tm;
	gmtime_r(&t, &tm);
	size_t n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, cap - n, ".%03uZ", (unsigned)(ns / 1000000 % 1000));
}

cJSON *ev_add_u64(cJSON *o, const char *name, uint64_t v)
{
	char num[24];
	snprintf(num, sizeof(num), "%" PRIu64, v);
	return cJSON_AddRawToObject(o, name, num);
}

/* One line: "<ns> <json>\n". Returns the JSON (inside line) or NULL when the
 * line is not one (E4). */
static const char *line_json(const char *line, size_t len, uint64_t *ns)
{
	char *end;
	if (len < 4 || line[0] < '0' || line[0] > '9')
		return NULL;
	*ns = strtoull(line, &end, 10);
	if (end >= line + len || *end != ' ' || end[1] != '{' || line[len - 1] != '}')
		return NULL;
	/* a raw control byte is never in a line cJSON wrote (it escapes
	 * them): a torn page of zeros, or other damage (E4) */
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)line[i] < 0x20)
			return NULL;
	return end + 1;
}

/* Fold one rendered line into ev->last_commit. */
static void note_commit(struct evlog *ev, const char *json, size_t len)
{
	if (len < 30 || !memmem(json, len, "\"type\":\"txn_commit\"", 19))
		return;
	cJSON *o = json_parse(json, len);
	cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "commit");
	/* a commit id is below 2^53 (an LSN; JSON numbers are exact up to
	 * there): a larger number is a damaged line, not a commit — trusted,
	 * it would lift last_commit past every real commit, and the commit
	 * events replay re-adds after a crash (E2) would all be skipped */
	if (cJSON_IsNumber(c) && c->valuedouble >= 0 && c->valuedouble < 0x1p53 &&
	    (uint64_t)c->valuedouble > ev->last_commit)
		ev->last_commit = (uint64_t)c->valuedouble;
	cJSON_Delete(o);
}

/* Read the whole file (ev->lock held). */
static int read_all(struct evlog *ev, char **out)
{
	char *buf = malloc(ev->size + 1);
	if (!buf)
		return -ENOMEM;
	int err = ev->size ? os_pread_full(ev->fd, buf, ev->size, 0) : 0;
	if (err) {
		free(buf);
		return err;
	}
	buf[ev->size] = 0;
	*out = buf;
	return 0;
}

int ev_open(const char *dir, struct evlog **out)
{
	struct evlog *ev = calloc(1, sizeof(*ev));
	if (!ev)
		return -ENOMEM;
	pthread_mutex_init(&ev->lock, NULL);
	ev->fd = -1;
	int err = -ENOMEM;
	if (!(ev->dir = strdup(dir)) || asprintf(&ev->path, "%s/" EV_FILE, dir) < 0) {
		ev->path = NULL;
		goto fail;
	}
	if ((err = ev->fd = txd_os->open(ev->path, O_RDWR | O_CREAT, 0600)) < 0)
		goto fail;
	if ((err = txd_os->fstat_size(ev->fd, &ev->size)))
		goto fail;
	char *buf;
	if ((err = read_all(ev, &buf)))
		goto fail;
	/* a torn last line ends the log (E4): cut it */
	uint64_t whole = ev->size;
	while (whole && buf[whole - 1] != '\n')
		whole--;
	for (char *line = buf, *nl; line < buf + whole; line = nl + 1) {
		nl = memchr(line, '\n', (size_t)(buf + whole - line));
		uint64_t ns;
		const char *j = line_json(line, (size_t)(nl - line), &ns);
		if (j)
			note_commit(ev, j, (size_t)(nl - j));
	}
	free(buf);
	if (whole != ev->size && (err = txd_os->ftruncate(ev->fd, (off_t)whole)))
		goto fail;
	ev->size = whole;
	*out = ev;
	return 0;
fail:
	ev_close(ev);
	return err;
}

void ev_close(struct evlog *ev)
{
	if (!ev)
		return;
	if (ev->fd >= 0)
		txd_os->close(ev->fd);
	pthread_mutex_destroy(&ev->lock);
	free(ev->dir);
	free(ev->path);
	free(ev);
}

void ev_emit(struct evlog *ev, uint64_t time_ns, const char *type, cJSON *fields)
{
	char when[40];
	ev_rfc3339(time_ns, when, sizeof(when));
	cJSON *o = cJSON_CreateObject();
	if (!o)
		goto out;
	cJSON_AddStringToObject(o, "time", when);
	cJSON_AddStringToObject(o, "type", type);
	for (cJSON *f = fields ? fields->child : NULL; f; f = f->next)
		cJSON_AddItemReferenceToObject(o, f->string, f);
	char *json = json_print(o, false);
	if (!json) {
		cJSON_Delete(o);
		goto out;
	}
	char *msg;
	if (asprintf(&msg, "txdir: %s", json) > 0) {
		ev_syslog(LOG_INFO, msg);
		free(msg);
	}
	char *line;
	int n = asprintf(&line, "%" PRIu64 " %s\n", time_ns, json);
	bool written = false;
	if (n > 0 && ev) {
		pthread_mutex_lock(&ev->lock);
		if (os_pwrite_full(ev->fd, line, (size_t)n, (off_t)ev->size) == 0) {
			ev->size += (uint64_t)n;
			note_commit(ev, json, strlen(json));
			written = true;
		} else {
			/* a failed append may leave a partial line: the next
			 * append starts after a newline of its own */
			ev_syslog(LOG_WARNING, "txdir: could not append to the event log");
			txd_os->ftruncate(ev->fd, (off_t)ev->size);
		}
		pthread_mutex_unlock(&ev->lock);
	}
	if (written && ev->obs.logged)
		ev->obs.logged(ev->obs.arg, time_ns, o);
	cJSON_Delete(o);
	if (n > 0)
		free(line);
	free(json);
out:
	cJSON_Delete(fields);
}

int ev_sync(struct evlog *ev)
{
	return ev ? txd_os->fdatasync(ev->fd) : 0;
}

uint64_t ev_last_commit(struct evlog *ev)
{
	pthread_mutex_lock(&ev->lock);
	uint64_t c = ev->last_commit;
	pthread_mutex_unlock(&ev->lock);
	return c;
}

void ev_commit_replayed(struct evlog *ev, uint64_t time_ns, uint64_t txn, uint64_t commit)
{
	if (!ev || !txn || commit <= ev_last_commit(ev))
		return;
	cJSON *f = cJSON_CreateObject();
	ev_add_u64(f, "txn", txn);
	ev_add_u64(f, "commit", commit);
	cJSON_AddBoolToObject(f, "from_wal", 1);
	ev_emit(ev, time_ns, "txn_commit", f);
}

int ev_cut_after(struct evlog *ev, uint64_t last)
{
	if (!ev)
		return 0;
	pthread_mutex_lock(&ev->lock);
	char *buf;
	int err = read_all(ev, &buf), cut = 0;
	if (err)
		goto out;
	uint64_t keep = ev->size, newest = 0;
	for (char *line = buf, *nl; line < buf + ev->size; line = nl + 1) {
		nl = memchr(line, '\n', (size_t)(buf + ev->size - line));
		uint64_t ns, before = ev->last_commit;
		const char *j = line_json(line, (size_t)(nl - line), &ns);
		if (!j)
			continue;
		ev->last_commit = 0;
		note_commit(ev, j, (size_t)(nl - j));
		uint64_t c = ev->last_commit;
		ev->last_commit = before;
		if (c > last) {
			keep = (uint64_t)(line - buf);
			break;
		}
		if (c > newest)
			newest = c;
	}
	free(buf);
	if (keep == ev->size)
		goto out;
	if (!(err = txd_os->ftruncate(ev->fd, (off_t)keep)) &&
	    !(err = txd_os->fdatasync(ev->fd))) {
		ev->size = keep;
		ev->last_commit = newest;
		cut = 1;
	}
out:
	pthread_mutex_unlock(&ev->lock);
	return err ? err : cut;
}

/* As clog_trim: the kept tail is copied to events.log.tmp without the lock
 * (events only append past it), then, under it, what came meanwhile, and
 * the files switch. One trim at a time (the checkpoint's). */
int ev_trim(struct evlog *ev, uint64_t oldest_ns)
{
	pthread_mutex_lock(&ev->lock);
	uint64_t upto = ev->size;
	pthread_mutex_unlock(&ev->lock);
	char *buf = malloc(upto + 1), *tmp = NULL;
	int fd = -1, err = buf ? 0 : -ENOMEM;
	if (err || (upto && (err = os_pread_full(ev->fd, buf, upto, 0))))
		goto out;
	uint64_t keep = 0; /* first byte to keep */
	for (char *line = buf, *nl; line < buf + upto; line = nl + 1) {
		uint64_t ns;
		if (!(nl = memchr(line, '\n', (size_t)(buf + upto - line))))
			break;
		if (line_json(line, (size_t)(nl - line), &ns) && ns >= oldest_ns)
			break;
		keep = (uint64_t)(nl + 1 - buf);
	}
	if (keep == 0)
		goto out; /* nothing old */
	err = -ENOMEM;
	if (asprintf(&tmp, "%s.tmp", ev->path) < 0) {
		tmp = NULL;
		goto out;
	}
	if ((err = fd = txd_os->open(tmp, O_RDWR | O_CREAT | O_TRUNC, 0600)) < 0 ||
	    (err = os_pwrite_full(fd, buf + keep, upto - keep, 0)))
		goto out;
	pthread_mutex_lock(&ev->lock);
	uint64_t more = ev->size - upto;
	char *tail = more ? malloc(more) : NULL;
	err = more && !tail ? -ENOMEM : 0;
	if (!err && more && !(err = os_pread_full(ev->fd, tail, more, (off_t)upto)))
		err = os_pwrite_full(fd, tail, more, (off_t)(upto - keep));
	/* the log holds events of committed actions: durable before it
	 * replaces the old file (events.h E2) */
	if (!err && !(err = txd_os->fdatasync(fd)) && !(err = txd_os->rename(tmp, ev->path))) {
		txd_os->close(ev->fd);
		ev->fd = fd;
		fd = -1;
		ev->size -= keep;
	}
	pthread_mutex_unlock(&ev->lock);
	free(tail);
	if (!err)
		err = os_fsync_dir(ev->dir);
	if (!err && ev->obs.trimmed)
		ev->obs.trimmed(ev->obs.arg, oldest_ns);
out:
	if (fd >= 0) {
		txd_os->close(fd);
		txd_os->unlink(tmp);
	}
	free(tmp);
	free(buf);
	return err;
}

/* The line's JSON with what the reader may not see hidden (E5); NULL when
 * it is shown as it is. */
static char *filtered(const char *json, size_t len, ev_path_ok_fn ok, void *arg, uint32_t uid)
{
	bool has_path = ok && memmem(json, len, "\"path\"", 6);
	bool has_private = uid != 0 && memmem(json, len, "\"private\"", 9);
	if (!has_path && !has_private)
		return NULL;
	cJSON *o = json_parse(json, len);
	cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "path");
	cJSON *owner = cJSON_GetObjectItemCaseSensitive(o, "uid");
	bool hide_path = has_path && cJSON_IsString(p) && !ok(arg, p->valuestring);
	bool hide_private = has_private && cJSON_GetObjectItemCaseSensitive(o, "private") &&
			    !(cJSON_IsNumber(owner) && owner->valuedouble == (double)uid);
	char *out = NULL;
	if (hide_path)
		cJSON_ReplaceItemInObjectCaseSensitive(o, "path", cJSON_CreateString("(hidden)"));
	if (hide_private)
		cJSON_ReplaceItemInObjectCaseSensitive(o, "private", cJSON_CreateString("(hidden)"));
	if (hide_path || hide_private)
		out = json_print(o, false);
	cJSON_Delete(o);
	return out;
}

int ev_render(struct evlog *ev, uint64_t oldest_ns, ev_path_ok_fn ok, void *arg,
	      uint32_t reader_uid, char **out, size_t *len)
{
	char *buf;
	pthread_mutex_lock(&ev->lock);
	int err = read_all(ev, &buf);
	uint64_t size = ev->size;
	pthread_mutex_unlock(&ev->lock);
	if (err)
		return err;
	size_t at = 0, cap = size + 2;
	char *res = malloc(cap);
	if (!res) {
		free(buf);
		return -ENOMEM;
	}
	for (char *line = buf, *nl; line < buf + size; line = nl + 1) {
		nl = memchr(line, '\n', (size_t)(buf + size - line));
		if (!nl)
			break;
		uint64_t ns;
		const char *j = line_json(line, (size_t)(nl - line), &ns);
		if (!j || ns < oldest_ns)
			continue;
		size_t jl = (size_t)(nl - j);
		char *f = filtered(j, jl, ok, arg, reader_uid);
		const char *src = f ? f : j;
		size_t sl = f ? strlen(f) : jl;
		if (at + sl + 2 > cap) { /* "(hidden)" is longer than a short path */
			char *grown = realloc(res, cap = 2 * cap + sl + 1);
			if (!grown) {
				free(f);
				free(buf);
				free(res);
				return -ENOMEM;
			}
			res = grown;
		}
		memcpy(res + at, src, sl);
		at += sl;
		res[at++] = '\n';
		free(f);
	}
	free(buf);
	res[at] = 0;
	*out = res;
	*len = at;
	return 0;
}
