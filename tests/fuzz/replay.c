/*
 * replay: run a fuzz target over files (or every file in directories)
 * without libFuzzer, so the corpus is replayed by `make check` with any
 * compiler. Prints "<target>: N passed, N failed"; a failing input aborts,
 * which the caller sees as a crash with the file named on stderr first.
 */
#include <dirent.h>
#include <signal.h>
#include <unistd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int ran;
static const char *current;

/* Name the input that made the target crash, then crash as it did. */
static void
on_crash(int sig)
{
	if (current != NULL) {
		(void)!write(2, "replay: crashed on ", 19);
		(void)!write(2, current, strlen(current));
		(void)!write(2, "\n", 1);
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

static void
run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	struct stat st;
	unsigned char *buf;
	size_t n;

	if (f == NULL || fstat(fileno(f), &st) < 0) {
		perror(path);
		exit(1);
	}
	buf = malloc((size_t)st.st_size + 1);
	if (buf == NULL)
		exit(1);
	n = fread(buf, 1, (size_t)st.st_size, f);
	fclose(f);
	current = path;
	LLVMFuzzerTestOneInput(buf, n);
	current = NULL;
	free(buf);
	ran++;
}

static void
run_path(const char *path)
{
	struct stat st;
	DIR *d;
	struct dirent *de;
	char child[4096];

	if (stat(path, &st) < 0) {
		perror(path);
		exit(1);
	}
	if (!S_ISDIR(st.st_mode)) {
		run_file(path);
		return;
	}
	d = opendir(path);
	if (d == NULL) {
		perror(path);
		exit(1);
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if ((size_t)snprintf(child, sizeof child, "%s/%s", path, de->d_name) >= sizeof child)
			continue;
		run_path(child);
	}
	closedir(d);
}

int
main(int argc, char **argv)
{
	const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];

	signal(SIGABRT, on_crash);
	signal(SIGSEGV, on_crash);
	for (int i = 1; i < argc; i++)
		run_path(argv[i]);
	printf("%s: %d passed, 0 failed\n", name, ran);
	return 0;
}
