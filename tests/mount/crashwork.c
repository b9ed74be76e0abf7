/*
 * crashwork.c — workload and checker for the SIGKILL crash test (crash.sh).
 * Not a test program: run.sh skips it (like mkstore).
 *
 *   crashwork work MNT LOG WID SEQBASE NFILES READY
 *       Worker WID loops until an operation fails (the server was killed):
 *       with seq = SEQBASE, SEQBASE+1, ... it either rewrites one of its own
 *       files MNT/wWID/fN (open O_WRONLY|O_TRUNC|O_CREAT, one to three
 *       write(2)s, sometimes fsync, close) or creates MNT/wWID/cSEQ
 *       (O_CREAT|O_EXCL, sometimes fsync). Every file carries a header
 *         "TXDC NAME SEQ LEN XXH64\n" followed by LEN body bytes that are a
 *       function of (NAME, SEQ).
 *       Before an operation it appends "A WID NAME SEQ" to LOG; after fsync(2)
 *       or close(2) *returns 0* it appends "W WID NAME SEQ" (one write(2) with
 *       O_APPEND each, so LOG's line order is a real-time order). After its
 *       first acknowledged operation it creates the file READY.
 *
 *   crashwork hold FILE SRC READY
 *       Opens FILE O_WRONLY|O_TRUNC, writes SRC's bytes, creates READY and
 *       waits to be killed without closing (no FLUSH, so no commit): the
 *       `cmd > file` still running when the server dies.
 *
 *   crashwork check MNT LOG
 *       After a remount, checks SPEC §3 against LOG:
 *       1. every file under MNT/w* is one complete version: its header
 *          parses, names this file, the length and checksum match and the
 *          body is exactly the body of (NAME, SEQ); an empty file is allowed
 *          only if no write to that name was ever acknowledged (the create
 *          is a commit of its own);
 *       2. no acknowledged write is lost: disk SEQ >= last "W" SEQ of the name,
 *          and every acknowledged name exists;
 *       3. nothing invented: disk SEQ <= last "A" SEQ of the name, and every
 *          file on disk was attempted;
 *       4. no holes: if an operation that started at LOG line P is visible,
 *          every operation acknowledged before line P is visible too.
 *       Prints "#"-prefixed findings and a one-line summary; exit 0 if clean.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "mix64.h"

#define MAX_BODY     (300 * 1024)
#define NAME_MAX_LEN 64

static uint64_t name_seed(const char *name, uint64_t seq)
{
	return mix64(XXH64(name, strlen(name), 0) ^ mix64(seq + 1));
}

/* Body of (name, seq): its length and bytes. */
static size_t body_len(const char *name, uint64_t seq)
{
	uint64_t r = name_seed(name, seq);

	switch (r % 8) {
	case 0:
		return 0;
	case 1:
		return (size_t)(r >> 8) % MAX_BODY; /* crosses chunk sizes */
	case 2:
		return (size_t)(r >> 8) % 70000;
	default:
		return (size_t)(r >> 8) % 6000;
	}
}

static void body_fill(unsigned char *buf, size_t len, const char *name, uint64_t seq)
{
	uint64_t s = name_seed(name, seq) | 1;

	for (size_t i = 0; i < len; i++) {
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		buf[i] = (unsigned char)(s >> 24);
	}
}

/* Full file image of (name, seq) into buf (MAX_BODY + 256); its length. */
static size_t image(unsigned char *buf, const char *name, uint64_t seq)
{
	size_t len = body_len(name, seq);
	int h;

	body_fill(buf + 256, len, name, seq);
	h = snprintf((char *)buf, 256, "TXDC %s %" PRIu64 " %zu %016" PRIx64 "\n", name, seq, len,
		     (uint64_t)XXH64(buf + 256, len, 0));
	memmove(buf + h, buf + 256, len);
	return (size_t)h + len;
}

/* ---- worker ---------------------------------------------------------- */

static int log_fd;
static int wid;

static void log_line(char kind, const char *name, uint64_t seq)
{
	char line[128];
	int n = snprintf(line, sizeof(line), "%c %d %s %" PRIu64 "\n", kind, wid, name, seq);

	if (write(log_fd, line, (size_t)n) != n) {
		perror("crashwork: log write");
		exit(3);
	}
}

static void die_op(const char *what, const char *path)
{
	/* Expected once the server is killed: report and stop. */
	fprintf(stderr, "crashwork %d: %s %s: %s\n", wid, what, path, strerror(errno));
	exit(1);
}

static int worker(const char *mnt, const char *log, uint64_t seqbase, int nfiles, const char *ready)
{
	static unsigned char buf[MAX_BODY + 256];
	char dir[4096], path[4200], name[NAME_MAX_LEN];
	uint64_t rnd = mix64((uint64_t)getpid() ^ seqbase);
	bool announced = false;

	log_fd = open(log, O_WRONLY | O_APPEND | O_CREAT, 0644);
	if (log_fd < 0) {
		perror(log);
		return 3;
	}
	snprintf(dir, sizeof(dir), "%s/w%d", mnt, wid);
	if (mkdir(dir, 0755) && errno != EEXIST)
		die_op("mkdir", dir);
	for (uint64_t seq = seqbase;; seq++) {
		bool create, do_fsync;
		size_t len, off;
		int fd, pieces;

		rnd = mix64(rnd + seq);
		create = rnd % 4 == 0;
		do_fsync = (rnd >> 8) % 4 == 0;
		pieces = 1 + (int)((rnd >> 16) % 3);
		if (create)
			snprintf(name, sizeof(name), "w%d/c%" PRIu64, wid, seq);
		else
			snprintf(name, sizeof(name), "w%d/f%d", wid,
				 (int)((rnd >> 24) % (uint64_t)nfiles));
		snprintf(path, sizeof(path), "%s/%s", mnt, name);
		len = image(buf, name, seq);

		log_line('A', name, seq);
		fd = open(path, create ? O_WRONLY | O_CREAT | O_EXCL : O_WRONLY | O_TRUNC | O_CREAT,
			  0644);
		if (fd < 0)
			die_op("open", path);
		off = 0;
		for (int p = 0; p < pieces; p++) {
			size_t k = p == pieces - 1 ? len - off : (len - off) / 2;
			ssize_t n = write(fd, buf + off, k);

			if (n != (ssize_t)k) {
				if (n >= 0)
					errno = EIO;
				die_op("write", path);
			}
			off += k;
		}
		if (do_fsync) {
			if (fsync(fd))
				die_op("fsync", path);
			log_line('W', name, seq);
		}
		if (close(fd))
			die_op("close", path);
		log_line('W', name, seq);
		if (!announced) {
			int r = open(ready, O_WRONLY | O_CREAT, 0644);

			if (r >= 0)
				close(r);
			announced = true;
		}
	}
}

/* ---- checker --------------------------------------------------------- */

struct op { /* one (name, seq) operation seen in the log */
	char name[NAME_MAX_LEN];
	uint64_t seq;
	long a_line; /* line of its "A" */
	long w_line; /* line of its first "W", or -1 */
};

struct nm { /* per name */
	char name[NAME_MAX_LEN];
	long first_a;	   /* line of the first "A" for this name */
	uint64_t last_a;   /* largest attempted seq */
	uint64_t last_w;   /* largest acknowledged seq */
	bool acked;	   /* some "W" */
	bool on_disk;	   /* found by the walk */
	bool empty;	   /* on disk and empty */
	bool bad;	   /* on disk, content not one version (reported) */
	uint64_t disk_seq; /* header seq if on disk and non-empty */
};

static struct op *ops;
static size_t nops, cap_ops;
static struct nm *nms;
static size_t nnms, cap_nms;
static int problems;

#define PROBLEM(...)                         \
	do {                                 \
		if (++problems <= 40) {      \
			printf("#   ");      \
			printf(__VA_ARGS__); \
			printf("\n");        \
		}                            \
	} while (0)

static struct nm *nm_get(const char *name, bool add)
{
	for (size_t i = 0; i < nnms; i++) /* a few thousand names: linear is fine */
		if (!strcmp(nms[i].name, name))
			return &nms[i];
	if (!add)
		return NULL;
	if (nnms == cap_nms) {
		cap_nms = cap_nms ? cap_nms * 2 : 1024;
		nms = realloc(nms, cap_nms * sizeof(*nms));
		if (!nms)
			abort();
	}
	memset(&nms[nnms], 0, sizeof(*nms));
	snprintf(nms[nnms].name, NAME_MAX_LEN, "%s", name);
	nms[nnms].first_a = -1;
	return &nms[nnms++];
}

static struct op *op_find(const char *name, uint64_t seq)
{
	for (size_t i = nops; i-- > 0;)
		if (ops[i].seq == seq && !strcmp(ops[i].name, name))
			return &ops[i];
	return NULL;
}

static int read_log(const char *log)
{
	FILE *f = fopen(log, "r");
	char line[256], name[NAME_MAX_LEN];
	long lineno = 0;

	if (!f) {
		perror(log);
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		char kind;
		int w;
		uint64_t seq;
		struct nm *n;

		lineno++;
		if (sscanf(line, "%c %d %63s %" SCNu64, &kind, &w, name, &seq) != 4 ||
		    (kind != 'A' && kind != 'W')) {
			PROBLEM("log line %ld unparsable: %s", lineno, line);
			continue;
		}
		n = nm_get(name, true);
		if (kind == 'A') {
			if (nops == cap_ops) {
				cap_ops = cap_ops ? cap_ops * 2 : 4096;
				ops = realloc(ops, cap_ops * sizeof(*ops));
				if (!ops)
					abort();
			}
			snprintf(ops[nops].name, NAME_MAX_LEN, "%s", name);
			ops[nops].seq = seq;
			ops[nops].a_line = lineno;
			ops[nops].w_line = -1;
			nops++;
			if (n->first_a < 0)
				n->first_a = lineno;
			if (seq > n->last_a)
				n->last_a = seq;
		} else {
			struct op *o = op_find(name, seq);

			if (!o)
				PROBLEM("log line %ld: W without A: %s", lineno, line);
			else if (o->w_line < 0)
				o->w_line = lineno;
			n->acked = true;
			if (seq > n->last_w)
				n->last_w = seq;
		}
	}
	fclose(f);
	return 0;
}

/* Checks one file's content; records its seq. */
static void check_file(const char *path, const char *name)
{
	static unsigned char got[MAX_BODY + 512], want[MAX_BODY + 256];
	struct nm *n = nm_get(name, false);
	char hname[NAME_MAX_LEN];
	uint64_t hseq, hsum;
	size_t hlen, wlen;
	ssize_t r;
	int fd;

	if (!n) {
		PROBLEM("%s: on disk but never attempted", name);
		return;
	}
	n->on_disk = true;
	n->bad = true; /* until its content checks out */
	fd = open(path, O_RDONLY);
	if (fd < 0) {
		PROBLEM("%s: open: %s", name, strerror(errno));
		return;
	}
	r = read(fd, got, sizeof(got));
	close(fd);
	if (r < 0) {
		PROBLEM("%s: read: %s", name, strerror(errno));
		return;
	}
	if (r == 0) {
		n->bad = false;
		n->empty = true;
		if (n->acked)
			PROBLEM("%s: empty, but seq %" PRIu64 " was acknowledged", name, n->last_w);
		return;
	}
	if (sscanf((char *)got, "TXDC %63s %" SCNu64 " %zu %" SCNx64, hname, &hseq, &hlen, &hsum) !=
	    4) {
		for (size_t i = 0; i < 40 && i < (size_t)r; i++)
			if (got[i] < 32 || got[i] > 126)
				got[i] = '.';
		PROBLEM("%s: %zd bytes, header does not parse (torn?): %.40s", name, r, got);
		return;
	}
	if (strcmp(hname, name)) {
		PROBLEM("%s: header names %s", name, hname);
		return;
	}
	wlen = image(want, name, hseq);
	if ((size_t)r != wlen || memcmp(got, want, wlen)) {
		size_t i = 0;

		while (i < (size_t)r && i < wlen && got[i] == want[i])
			i++;
		PROBLEM("%s: seq %" PRIu64 ": %zd bytes, want %zu; first difference at byte %zu "
			"(torn or mixed version)",
			name, hseq, r, wlen, i);
		return;
	}
	n->bad = false;
	n->disk_seq = hseq;
	if (!op_find(name, hseq))
		PROBLEM("%s: holds seq %" PRIu64 ", never attempted", name, hseq);
	if (n->acked && hseq < n->last_w)
		PROBLEM("%s: holds seq %" PRIu64 ", but seq %" PRIu64 " was acknowledged (lost)",
			name, hseq, n->last_w);
	if (hseq > n->last_a)
		PROBLEM("%s: holds seq %" PRIu64 " > last attempted %" PRIu64, name, hseq,
			n->last_a);
}

static int walk(const char *mnt)
{
	DIR *top = opendir(mnt);
	struct dirent *d;
	size_t files = 0;

	if (!top) {
		perror(mnt);
		return -1;
	}
	while ((d = readdir(top))) {
		char sub[4096];
		DIR *dd;
		struct dirent *e;

		if (d->d_name[0] != 'w')
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", mnt, d->d_name);
		dd = opendir(sub);
		if (!dd) {
			PROBLEM("%s: opendir: %s", sub, strerror(errno));
			continue;
		}
		while ((e = readdir(dd))) {
			char path[8192], name[NAME_MAX_LEN];

			if (e->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/%s", sub, e->d_name);
			if ((size_t)snprintf(name, sizeof(name), "%.30s/%.30s", d->d_name,
					     e->d_name) >= sizeof(name) ||
			    strlen(d->d_name) > 30 || strlen(e->d_name) > 30) {
				PROBLEM("%s: unexpected name", path);
				continue;
			}
			check_file(path, name);
			files++;
		}
		closedir(dd);
	}
	closedir(top);
	printf("# checked %zu files against %zu logged operations\n", files, nops);
	return 0;
}

/* Whether operation o's effect is on disk (a later version counts too). */
static bool visible(const struct op *o, const struct nm *n)
{
	if (!n->on_disk)
		return false;
	if (n->empty)
		return false; /* only the create commit; no content op is visible */
	return n->disk_seq >= o->seq;
}

static void check_names_and_prefix(void)
{
	long p = 0; /* latest A line of a visible operation */
	const struct op *po = NULL;

	for (size_t i = 0; i < nnms; i++) {
		struct nm *n = &nms[i];

		if (n->acked && !n->on_disk)
			PROBLEM("%s: seq %" PRIu64 " acknowledged, file missing", n->name,
				n->last_w);
		if (n->on_disk && n->empty && n->first_a > p) {
			p = n->first_a; /* its create is visible */
			po = NULL;
		}
	}
	for (size_t i = 0; i < nops; i++) {
		const struct nm *n = nm_get(ops[i].name, false);

		if (n && n->on_disk && !n->empty && !n->bad && n->disk_seq == ops[i].seq &&
		    ops[i].a_line > p) {
			p = ops[i].a_line;
			po = &ops[i];
		}
	}
	for (size_t i = 0; i < nops; i++) {
		const struct op *o = &ops[i];

		const struct nm *n = nm_get(o->name, false);

		if (o->w_line < 0 || o->w_line >= p || n->bad)
			continue; /* a bad file is reported already */
		if (!visible(o, n))
			PROBLEM("hole: %s seq %" PRIu64 " (acknowledged at log line %ld) is not "
				"visible, but %s (started at line %ld) is",
				o->name, o->seq, o->w_line, po ? po->name : "a create", p);
	}
}

static int check(const char *mnt, const char *log)
{
	if (read_log(log) || walk(mnt))
		return 2;
	check_names_and_prefix();
	if (problems > 40)
		printf("#   ... %d problems in all\n", problems);
	printf("# %s: %d problems\n", problems ? "FAIL" : "clean", problems);
	return problems ? 1 : 0;
}

static int hold(const char *file, const char *src, const char *ready)
{
	static unsigned char buf[1 << 20];
	int in = open(src, O_RDONLY), out, r;
	ssize_t n;

	if (in < 0) {
		perror(src);
		return 2;
	}
	n = read(in, buf, sizeof(buf));
	close(in);
	out = open(file, O_WRONLY | O_TRUNC);
	if (n < 0 || out < 0 || write(out, buf, (size_t)n) != n) {
		perror(file);
		return 1;
	}
	r = open(ready, O_WRONLY | O_CREAT, 0644);
	if (r >= 0)
		close(r);
	for (;;)
		pause();
}

int main(int argc, char **argv)
{
	if (argc == 8 && !strcmp(argv[1], "work")) {
		wid = atoi(argv[4]);
		return worker(argv[2], argv[3], strtoull(argv[5], NULL, 10), atoi(argv[6]),
			      argv[7]);
	}
	if (argc == 5 && !strcmp(argv[1], "hold"))
		return hold(argv[2], argv[3], argv[4]);
	if (argc == 4 && !strcmp(argv[1], "check"))
		return check(argv[2], argv[3]);
	fprintf(stderr,
		"usage: %s work MNT LOG WID SEQBASE NFILES READY\n"
		"       %s hold FILE SRC READY\n"
		"       %s check MNT LOG\n",
		argv[0], argv[0], argv[0]);
	return 2;
}
