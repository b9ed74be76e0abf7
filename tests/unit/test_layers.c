/*
 * test_layers.c — the engine's layering rules, read from its sources
 * (core.h "every arrow points down"; STYLE rules 2 and 4):
 *  L1 the data tree (fs.c, fsops.c, fsfile.c) neither includes ctl.h nor
 *     calls a ctl_* function: only the dispatch (vfs.c) routes a node to
 *     the control tree;
 *  L2 ctl.h is included by the dispatch and the control tree only;
 *  L3 there is no umbrella header: engine/fs.h is gone and nothing includes it;
 *  L4 fusefs/ includes only the engine's public header (txdir.h) and keeps
 *     no caller in thread-local storage (the request's context is passed to
 *     the engine explicitly);
 *  L5 the modules below the data tree — transactions (txn.c, dtc.c), checkpoints
 *     (ckpt.c) and the services (svc, lease, proc, journal, events, clog) —
 *     include neither dtree.h nor ctl.h and call no data-tree function
 *     (those declared in dtree.h): what a commit needs of the data tree's
 *     state goes through the hooks it registers (core.h fs->dt).
 * Sources are found under TXD_SRCDIR (the environment variable, else the
 * checkout the test was built from).
 */
#include <criterion/criterion.h>
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef TXD_SRCDIR
#define TXD_SRCDIR "."
#endif

TestSuite(layers, .timeout = 30);

static const char *srcdir(void)
{
	const char *d = getenv("TXD_SRCDIR");
	return d && *d ? d : TXD_SRCDIR;
}

/* The file's text (malloc'd), or NULL if it does not exist. */
static char *slurp(const char *rel)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", srcdir(), rel);
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	for (size_t n; buf && (n = fread(buf + len, 1, cap - len - 1, f)) > 0;) {
		len += n;
		if (len + 1 == cap)
			buf = realloc(buf, cap *= 2);
	}
	fclose(f);
	if (buf)
		buf[len] = 0;
	return buf;
}

/* The first call of a ctl_* function in text (an identifier starting with
 * "ctl_" followed by "("), or NULL. */
static const char *ctl_call(const char *text)
{
	for (const char *p = strstr(text, "ctl_"); p; p = strstr(p + 1, "ctl_")) {
		if (p > text && (isalnum((unsigned char)p[-1]) || p[-1] == '_' || p[-1] == '>' ||
				 p[-1] == '.'))
			continue; /* part of a longer name, or a field */
		const char *q = p + 4;
		while (isalnum((unsigned char)*q) || *q == '_')
			q++;
		while (*q == ' ')
			q++;
		if (*q == '(')
			return p;
	}
	return NULL;
}

static bool includes(const char *text, const char *header)
{
	char line[128];
	snprintf(line, sizeof(line), "#include \"%s\"", header);
	return strstr(text, line) != NULL;
}

Test(layers, l1_data_tree_never_calls_the_control_tree)
{
	static const char *const data_tree[] = {"engine/fs.c", "engine/fsops.c", "engine/fsfile.c"};
	for (size_t k = 0; k < sizeof(data_tree) / sizeof(data_tree[0]); k++) {
		char *text = slurp(data_tree[k]);
		cr_assert_not_null(text, "%s/%s not found (TXD_SRCDIR)", srcdir(), data_tree[k]);
		cr_expect(!includes(text, "ctl.h"), "%s includes ctl.h", data_tree[k]);
		const char *call = ctl_call(text);
		cr_expect_null(call, "%s calls %.40s", data_tree[k], call ? call : "");
		free(text);
	}
}

Test(layers, l2_only_the_dispatch_and_the_control_tree_include_ctl_h)
{
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/engine", srcdir());
	DIR *d = opendir(dir);
	cr_assert_not_null(d, "%s", dir);
	int seen = 0;
	for (struct dirent *e; (e = readdir(d));) {
		size_t len = strlen(e->d_name);
		if (len < 3 || (strcmp(e->d_name + len - 2, ".c") && strcmp(e->d_name + len - 2, ".h")))
			continue;
		char rel[512];
		snprintf(rel, sizeof(rel), "engine/%s", e->d_name);
		char *text = slurp(rel);
		if (!text)
			continue;
		seen++;
		/* the dispatch and the control tree (ctl.c and its adapters ctl_*.c) */
		bool allowed = strcmp(e->d_name, "vfs.c") == 0 || strncmp(e->d_name, "ctl", 3) == 0;
		cr_expect(allowed || !includes(text, "ctl.h"), "%s includes ctl.h", rel);
		free(text);
	}
	closedir(d);
	cr_expect_gt(seen, 10);
}

Test(layers, l3_no_umbrella_header)
{
	char *fs_h = slurp("engine/fs.h");
	cr_expect_null(fs_h, "engine/fs.h still exists");
	free(fs_h);
	static const char *const users[] = {"engine/fs.c",  "engine/fsops.c", "engine/fsfile.c",
					    "engine/ctl.c", "engine/txn.c",   "engine/ckpt.c",
					    "engine/vfs.c"};
	for (size_t k = 0; k < sizeof(users) / sizeof(users[0]); k++) {
		char *text = slurp(users[k]);
		cr_assert_not_null(text, "%s", users[k]);
		cr_expect(!includes(text, "fs.h"), "%s includes fs.h", users[k]);
		free(text);
	}
}

Test(layers, l4_fusefs_passes_the_context_and_holds_no_caller)
{
	static const char *const files[] = {"fusefs/ops.c", "fusefs/proto.c", "fusefs/reply.c",
					    "fusefs/txdirfs.h"};
	for (size_t k = 0; k < sizeof(files) / sizeof(files[0]); k++) {
		char *text = slurp(files[k]);
		cr_assert_not_null(text, "%s", files[k]);
		for (const char *p = strstr(text, "#include \""); p; p = strstr(p + 1, "#include \"")) {
			bool ok = !strncmp(p, "#include \"txdir.h\"", 18) ||
				  !strncmp(p, "#include \"txdirfs.h\"", 20);
			cr_expect(ok, "%s: %.40s", files[k], p);
		}
		cr_expect_null(strstr(text, "__thread"), "%s keeps thread-local state", files[k]);
		cr_expect_null(strstr(text, "txd_set_caller"), "%s", files[k]);
		free(text);
	}
}

/* The functions dtree.h declares (the names after "fs_" up to "(" on lines
 * that start a declaration). */
static size_t dtree_functions(char names[][64], size_t cap)
{
	char *text = slurp("engine/dtree.h");
	size_t n = 0;
	cr_assert_not_null(text, "engine/dtree.h");
	for (const char *p = strstr(text, "fs_"); p && n < cap; p = strstr(p + 1, "fs_")) {
		if (p > text && (isalnum((unsigned char)p[-1]) || p[-1] == '_'))
			continue;
		const char *q = p;
		while (isalnum((unsigned char)*q) || *q == '_')
			q++;
		if (*q != '(' || q - p >= 64)
			continue;
		memcpy(names[n], p, (size_t)(q - p));
		names[n][q - p] = 0;
		n++;
	}
	free(text);
	return n;
}

Test(layers, l5_below_the_data_tree)
{
	static const char *const below[] = {"engine/txn.c",    "engine/dtc.c",  "engine/ckpt.c",
					    "engine/svc.c",    "engine/lease.c", "engine/proc.c",
					    "engine/journal.c", "engine/events.c", "engine/clog.c"};
	static char names[256][64];
	size_t n = dtree_functions(names, 256);
	cr_assert_gt(n, 10, "dtree.h declares %zu functions", n);
	for (size_t k = 0; k < sizeof(below) / sizeof(below[0]); k++) {
		char *text = slurp(below[k]);
		cr_assert_not_null(text, "%s", below[k]);
		cr_expect(!includes(text, "dtree.h"), "%s includes dtree.h", below[k]);
		cr_expect(!includes(text, "ctl.h"), "%s includes ctl.h", below[k]);
		for (size_t f = 0; f < n; f++) {
			char call[70];
			snprintf(call, sizeof(call), "%.63s(", names[f]);
			for (const char *p = strstr(text, call); p; p = strstr(p + 1, call)) {
				bool part = p > text && (isalnum((unsigned char)p[-1]) || p[-1] == '_');
				cr_expect(part, "%s calls %s (dtree.h)", below[k], names[f]);
			}
		}
		free(text);
	}
}
