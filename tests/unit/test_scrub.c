/*
 * test_scrub.c — engine/scrub.c without a mount: a clean store scrubs
 * clean, a byte flipped in a live file's chunk is found naming the file
 * and its bytes (and counted in the stats), S3 (EPERM for another uid,
 * EBUSY while one runs), S4 (cancel ends a throttled scrub), and closing
 * the store while a scrub runs stops it (scrub_free). Under `make tsan` this is also the scrub thread's race
 * test against fs->lock. Everything goes through the control file
 * .txdir/scrub, as mountctl does (write a word, read the JSON).
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "../../engine/txdir.h"
#include "../support/txdtest.h"

static char *store;
static struct txd_fs *fs;
/* Whether a thread of this process is named name (/proc/self/task/T/comm). */
static bool has_thread(const char *name)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	bool found = false;
	while (d && !found && (e = readdir(d))) {
		char path[300], comm[64] = "";
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
		FILE *f = fopen(path, "r");
		if (f && fgets(comm, sizeof(comm), f))
			found = !strncmp(comm, name, strlen(name)) && comm[strlen(name)] == '\n';
		if (f)
			fclose(f);
	}
	if (d)
		closedir(d);
	return found;
}

static void setup(void)
{
	store = tt_mkstore();
	cr_assert_not_null(store);
	struct txd_opts o = {.durability = TXD_DUR_FSYNC};
	cr_assert_eq(txd_fs_open(store, &o, &fs, NULL), 0);
}

static void teardown(void)
{
	if (fs)
		txd_fs_close(fs);
	fs = NULL;
	tt_rmtree(store);
	free(store);
}

TestSuite(scrub, .init = setup, .fini = teardown, .timeout = 120);

/* A word written to .txdir/scrub as uid (the control tree's path). */
static int ctl_word(uint32_t uid, const char *word)
{
	uint64_t node;
	struct txd_open_out oo;
	struct txd_cred c = tt_cred;
	c.uid = uid;
	int err = tt_resolve(fs, ".txdir/scrub", NULL, NULL, &node);
	if (err || (err = txd_open(fs, &c, node, O_WRONLY | O_TRUNC, &oo)))
		return err;
	ssize_t n = txd_write(fs, &c, oo.fh, word, strlen(word), 0);
	txd_release(fs, oo.fh);
	return n < 0 ? (int)n : 0;
}

static int start(uint32_t uid, uint64_t rate)
{
	char w[64];
	snprintf(w, sizeof(w), "start rate=%llu\n", (unsigned long long)rate);
	return ctl_word(uid, w);
}

static cJSON *progress(void)
{
	char *t = NULL;
	size_t len = 0;
	cr_assert_eq(tt_get(fs, ".txdir/scrub", &t, &len), 0);
	cJSON *j = cJSON_Parse(t);
	cr_assert_not_null(j, "%s", t);
	free(t);
	return j;
}

static const char *state_of(const cJSON *j)
{
	return cJSON_GetObjectItemCaseSensitive(j, "state")->valuestring;
}

static double num(const cJSON *j, const char *k)
{
	return cJSON_GetObjectItemCaseSensitive(j, k)->valuedouble;
}

/* The scrub's end, polled (bounded): its final object. */
static cJSON *wait_end(void)
{
	for (int i = 0; i < 20000; i++) {
		cJSON *j = progress();
		if (strcmp(state_of(j), "running"))
			return j;
		cJSON_Delete(j);
		nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
	}
	cr_assert(false, "the scrub did not end");
	return NULL;
}

static void put_big(const char *name, size_t len)
{
	char *b = malloc(len);
	for (size_t k = 0; k < len; k++)
		b[k] = (char)(k * 131 + 7);
	cr_assert_eq(tt_put(fs, name, b, len), 0);
	free(b);
}

static void flip(const char *rel, off_t off)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", store, rel);
	int fd = open(path, O_RDWR);
	cr_assert_geq(fd, 0, "%s", path);
	unsigned char c;
	cr_assert_eq(pread(fd, &c, 1, off), 1);
	c ^= 0xff;
	cr_assert_eq(pwrite(fd, &c, 1, off), 1);
	close(fd);
}

Test(scrub, clean_store_is_clean)
{
	put_big("big", 1 << 20);
	cr_assert_eq(tt_put(fs, "small", "hello\n", 6), 0);
	cr_assert_eq(start(0, 0), 0);
	cJSON *j = wait_end();
	cr_assert_str_eq(state_of(j), "done");
	cr_assert_eq(num(j, "errors"), 0);
	cr_assert_eq(num(j, "files_checked"), 2);
	cr_assert_geq(num(j, "bytes_checked"), 1 << 20);
	cr_assert_eq(num(j, "records_checked"), num(j, "records_total"));
	cJSON_Delete(j);
}

/* A 1 MiB write is one commit whose chunks sit in the WAL record (rec.h
 * REC_INLINE): a byte flipped in chunk 1 fails both the record's checksum
 * and the chunk's, and the chunk's problem names the file. */
Test(scrub, flipped_byte_names_the_file)
{
	size_t len = 1 << 20;
	char *b = malloc(len);
	for (size_t k = 0; k < len; k++)
		b[k] = (char)(k * 131 + 7);
	memcpy(b + 40000, "SCRUBMARKER", 11); /* chunk 1: bytes 32768..65535 */
	cr_assert_eq(tt_put(fs, "big", b, len), 0);
	free(b);
	char path[4096];
	snprintf(path, sizeof(path), "%s/coordination/dtc/wal/seg-00000001", store);
	FILE *f = fopen(path, "rb");
	cr_assert_not_null(f);
	static char seg[8 << 20];
	size_t n = fread(seg, 1, sizeof(seg), f);
	fclose(f);
	char *at = memmem(seg, n, "SCRUBMARKER", 11);
	cr_assert_not_null(at);
	flip("coordination/dtc/wal/seg-00000001", at - seg + 3);
	cr_assert_eq(start(0, 0), 0);
	cJSON *j = wait_end();
	cr_assert_str_eq(state_of(j), "done");
	cr_assert_eq(num(j, "errors"), 2, "the record and the chunk");
	bool named = false;
	const cJSON *p;
	cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(j, "problems"))
	{
		const cJSON *path_j = cJSON_GetObjectItemCaseSensitive(p, "path");
		named |= !strcmp(cJSON_GetObjectItemCaseSensitive(p, "kind")->valuestring, "chunk") &&
			 cJSON_IsString(path_j) && !strcmp(path_j->valuestring, "/big") &&
			 strstr(cJSON_GetObjectItemCaseSensitive(p, "affects")->valuestring,
				"bytes 32768..65535");
	}
	cr_assert(named, "no chunk problem names /big, bytes 32768..65535");
	cJSON_Delete(j);
	struct txd_status st;
	txd_get_status(fs, &st);
	cr_assert_geq(st.checksum_errors, 1);
	char *stats = NULL;
	size_t slen = 0;
	cr_assert_eq(tt_get(fs, ".txdir/stats", &stats, &slen), 0);
	cr_assert(strstr(stats, "\ntxdir_scrub_errors_total 2\n"), "%s", stats);
	free(stats);
}

Test(scrub, eperm_ebusy_cancel)
{
	put_big("big", 1 << 20);
	if (geteuid() != 4242)
		cr_assert_eq(start(4242, 0), -EPERM);
	cr_assert_eq(start(0, 1), 0); /* 1 byte/s: runs until cancelled */
	cr_assert_eq(start(0, 0), -EBUSY);
	if (geteuid() != 4242)
		cr_assert_eq(ctl_word(4242, "cancel"), -EPERM);
	cr_assert_eq(ctl_word(0, "bogus"), -EINVAL);
	cr_assert_eq(ctl_word(0, "cancel"), 0);
	cJSON *j = wait_end();
	cr_assert_str_eq(state_of(j), "cancelled");
	cJSON_Delete(j);
	cr_assert_eq(start(0, 0), 0, "a new scrub after the cancelled one");
	j = wait_end();
	cr_assert_str_eq(state_of(j), "done");
	cr_assert_eq(num(j, "id"), 2);
	cJSON_Delete(j);
}

Test(scrub, close_while_running)
{
	put_big("big", 1 << 20);
	cr_assert_eq(start(0, 1), 0);
	cr_assert(has_thread("txd-scrub"));
	txd_fs_close(fs); /* ctl_upper_free → scrub_free stops and joins the thread */
	fs = NULL;
	cr_assert(!has_thread("txd-scrub"), "the scrub thread outlived txd_fs_close");
}
