/*
 * txn.c — transactions through the mounted file interface (SPEC §4,
 * txdir(7)); run, txn and umount use these and nothing else:
 *
 *   mkdir MNT/.txdir/txn/NAME          begin (EEXIST if NAME exists)
 *   MNT/.txdir/txn/NAME/root/          the transaction's view of the tree
 *   MNT/.txdir/txn/NAME/ctl            one command per write(2): commit,
 *                                      abort, readonly, prepare P as N;
 *                                      the write returns the result
 *                                      (commit: EBUSY = lost)
 *   MNT/.txdir/txn/NAME/status         active | prepared P |
 *                                      committed ID | aborted ...
 *   MNT/.txdir/txn/NAME/info.json      everything, as JSON
 *   rmdir MNT/.txdir/txn/NAME          abort an active one / drop the record
 *
 * Every call returns 0 or a negative errno; nothing here prints.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mountctl.h"

#define TXN_DIR ".txdir/txn"

char *mc_txn_path(const char *mnt, const char *name, const char *leaf)
{
	char *dir = mc_join(mnt, TXN_DIR), *txn, *out;

	if (!name)
		return dir;
	txn = mc_join(dir, name);
	free(dir);
	if (!leaf)
		return txn;
	out = mc_join(txn, leaf);
	free(txn);
	return out;
}

bool mc_txn_name_ok(const char *name)
{
	size_t n = strlen(name);

	return n >= 1 && n <= 255 && !strchr(name, '/') && strcmp(name, ".") != 0 &&
	       strcmp(name, "..") != 0;
}

int mc_txn_begin(const char *mnt, const char *name)
{
	char *path = mc_txn_path(mnt, name, NULL);
	int r = mkdir(path, 0755) < 0 ? -errno : 0;

	free(path);
	return r;
}

int mc_txn_ctl(const char *mnt, const char *name, const char *command)
{
	return mc_txn_ctl_sent(mnt, name, command, NULL);
}

int mc_txn_ctl_sent(const char *mnt, const char *name, const char *command, bool *sent)
{
	char *path = mc_txn_path(mnt, name, "ctl"), *line;
	int fd, len, r = 0;
	ssize_t n;

	if (sent)
		*sent = false;
	fd = open(path, O_WRONLY | O_CLOEXEC);
	free(path);
	if (fd < 0)
		return -errno;
	if (sent)
		*sent = true;
	/* What `echo CMD > ctl` writes: the command and a newline, in one write
	 * ("prepare P as NAME" may be 500 bytes and more). */
	len = asprintf(&line, "%s\n", command);
	if (len < 0)
		abort();
	do
		n = write(fd, line, (size_t)len);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		r = -errno;
	else if (n != len)
		r = -EIO;
	if (close(fd) < 0 && r == 0)
		r = -errno;
	free(line);
	return r;
}

int mc_txn_remove(const char *mnt, const char *name)
{
	char *path = mc_txn_path(mnt, name, NULL);
	int r = rmdir(path) < 0 ? -errno : 0;

	free(path);
	return r;
}

char *mc_txn_status(const char *mnt, const char *name)
{
	char *path = mc_txn_path(mnt, name, "status"), *text = NULL;
	ssize_t n = mc_read_file(path, MC_PROBE_MS, &text);

	free(path);
	if (n < 0)
		return NULL;
	while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' '))
		text[--n] = '\0';
	return text;
}

bool mc_txn_status_active(const char *status)
{
	return status && strcmp(status, "active") == 0;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int mc_txn_names(const char *mnt, char ***names, size_t *count)
{
	char *path = mc_txn_path(mnt, NULL, NULL), **v = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d;

	*names = NULL;
	*count = 0;
	d = opendir(path);
	free(path);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			v = realloc(v, cap * sizeof(*v));
			if (!v)
				abort();
		}
		v[n++] = mc_strdup(de->d_name);
	}
	closedir(d);
	if (n)
		qsort(v, n, sizeof(*v), cmp_names);
	*names = v;
	*count = n;
	return 0;
}

void mc_txn_names_free(char **names, size_t count)
{
	for (size_t i = 0; i < count; i++)
		free(names[i]);
	free(names);
}

int mc_txn_count_active(const char *mnt, char **first)
{
	char **names;
	size_t n;
	int r, active = 0;

	*first = NULL;
	r = mc_txn_names(mnt, &names, &n);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		char *status = mc_txn_status(mnt, names[i]);

		if (mc_txn_status_active(status) && active++ == 0)
			*first = mc_strdup(names[i]);
		free(status);
	}
	mc_txn_names_free(names, n);
	return active;
}
