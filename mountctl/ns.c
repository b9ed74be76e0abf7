/*
 * ns.c — the private mount namespace `mountctl run` gives CMD (SPEC §4).
 *
 * Runs in the forked child, before exec:
 *   1. non-root: unshare(CLONE_NEWUSER | CLONE_NEWNS) and map the caller's
 *      uid and gid to themselves (setgroups "deny" first, as the kernel
 *      requires). CMD keeps its identity and supplementary groups, so
 *      permission checks and chown by tar/rsync behave as outside; after
 *      exec it holds no capability in the new namespace either (its uid is
 *      not 0). Root (or a root without CAP_SYS_ADMIN: EPERM) gets only
 *      CLONE_NEWNS, resp. falls back to the user namespace path.
 *   2. mount("/", MS_SLAVE | MS_REC): mounts made by the host still reach
 *      CMD, ours never leak out.
 *   3. bind-mount the view (MNT/.txdir/txn/NAME/root) over MNT, recursive
 *      (a non-recursive bind is refused in a user namespace when the
 *      source has locked submounts).
 *   4. chdir to the caller's cwd again: a cwd inside MNT still points into
 *      the main tree until it is looked up again through the bind mount.
 *
 * It is cooperative isolation, not a sandbox: descriptors opened before,
 * daemons outside, other mount namespaces (/proc/PID/root) still see the
 * main tree. mountctl(1) says so.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#include "mountctl.h"

static int write_proc(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), r = 0;
	size_t len = strlen(text);

	if (fd < 0)
		return -errno;
	if (write(fd, text, len) != (ssize_t)len)
		r = errno ? -errno : -EIO;
	close(fd);
	return r;
}

/* A user namespace in which the caller is itself, plus a mount namespace. */
static int unshare_as_self(char *why, size_t whylen)
{
	uid_t uid = geteuid();
	gid_t gid = getegid();
	char map[64];
	int r;

	if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0) {
		r = -errno;
		snprintf(why, whylen, "cannot create a user namespace: %s%s", strerror(-r),
			 r == -EPERM || r == -ENOSPC ? " (are unprivileged user namespaces "
						       "disabled?)" : "");
		return r;
	}
	r = write_proc("/proc/self/setgroups", "deny");
	if (r < 0 && r != -ENOENT)
		goto out_map;
	snprintf(map, sizeof(map), "%u %u 1\n", (unsigned)uid, (unsigned)uid);
	r = write_proc("/proc/self/uid_map", map);
	if (r < 0)
		goto out_map;
	snprintf(map, sizeof(map), "%u %u 1\n", (unsigned)gid, (unsigned)gid);
	r = write_proc("/proc/self/gid_map", map);
	if (r < 0)
		goto out_map;
	return 0;
out_map:
	snprintf(why, whylen, "cannot map uid %u / gid %u in a user namespace: %s",
		 (unsigned)uid, (unsigned)gid, strerror(-r));
	return r;
}

static int unshare_mounts(char *why, size_t whylen)
{
	int r;

	if (geteuid() != 0)
		return unshare_as_self(why, whylen);
	if (unshare(CLONE_NEWNS) == 0)
		return 0;
	r = -errno;
	if (r == -EPERM)
		return unshare_as_self(why, whylen);
	snprintf(why, whylen, "cannot create a mount namespace: %s", strerror(-r));
	return r;
}

int mc_ns_enter_view(const char *view, const char *mnt, const char *cwd, char *why,
		     size_t whylen)
{
	int r = unshare_mounts(why, whylen);

	if (r < 0)
		return r;
	if (mount(NULL, "/", NULL, MS_SLAVE | MS_REC, NULL) < 0) {
		r = -errno;
		snprintf(why, whylen, "cannot make / a slave mount: %s", strerror(errno));
		return r;
	}
	if (mount(view, mnt, NULL, MS_BIND | MS_REC, NULL) < 0) {
		r = -errno;
		snprintf(why, whylen, "cannot bind %s over %s: %s", view, mnt, strerror(errno));
		return r;
	}
	if (cwd && chdir(cwd) < 0) {
		r = -errno;
		snprintf(why, whylen, "cannot re-enter the working directory %s: %s", cwd,
			 strerror(errno));
		return r;
	}
	return 0;
}
