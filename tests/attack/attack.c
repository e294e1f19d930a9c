/*
 * attack: tries one thing a tenant might do to reach the kernel or the host from inside a
 * container, and says what happened. Used by moat's end-to-end confinement tests
 * (tests/tests/confinement.rs); busybox cannot make most of these system calls.
 *
 *   attack MODE [ARGS...]
 *
 * Prints one line `MODE: ok[ DETAIL]` when the attempt succeeded (exit 0), or
 * `MODE: ERRNAME (strerror)[ at STEP]` when the kernel refused it (exit 1). Usage errors
 * exit 2. Nothing here harms the host when it succeeds: files are rewritten with the
 * contents they already hold, devices are only read, the runtime's binary is only opened,
 * never written.
 *
 * Build: gcc -static -O2 -o attack attack.c
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/io_uring.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <linux/perf_event.h>
#include <linux/sched.h>
#include <linux/userfaultfd.h>
#include <net/ethernet.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/klog.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef KEY_SPEC_PROCESS_KEYRING
#define KEY_SPEC_PROCESS_KEYRING -2
#endif
#ifndef KEYCTL_JOIN_SESSION_KEYRING
#define KEYCTL_JOIN_SESSION_KEYRING 1
#endif

static const char *mode;

static int ok(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int ok(const char *fmt, ...)
{
	printf("%s: ok", mode);
	if (fmt && *fmt) {
		va_list ap;
		putchar(' ');
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
	}
	putchar('\n');
	return 0;
}

/* The kernel refused `step` with errno `e`. */
static int denied_at(int e, const char *step)
{
	const char *name = strerrorname_np(e);
	printf("%s: %s (%s)", mode, name ? name : "E?", strerror(e));
	if (step)
		printf(" at %s", step);
	putchar('\n');
	return 1;
}

static int denied(const char *step) { return denied_at(errno, step); }

static int ids(void)
{
	return ok("uid=%d euid=%d gid=%d egid=%d", getuid(), geteuid(), getgid(), getegid());
}

static int bpf_map(void)
{
	union bpf_attr attr;
	memset(&attr, 0, sizeof attr);
	attr.map_type = BPF_MAP_TYPE_ARRAY;
	attr.key_size = 4;
	attr.value_size = 4;
	attr.max_entries = 1;
	long fd = syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr);
	return fd < 0 ? denied("bpf(BPF_MAP_CREATE)") : ok("map fd %ld", fd);
}

static int perf(void)
{
	struct perf_event_attr attr;
	memset(&attr, 0, sizeof attr);
	attr.size = sizeof attr;
	attr.type = PERF_TYPE_SOFTWARE;
	attr.config = PERF_COUNT_SW_TASK_CLOCK;
	attr.exclude_kernel = 1;
	attr.exclude_hv = 1;
	long fd = syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
	return fd < 0 ? denied("perf_event_open(own task clock, user only)") : ok("fd %ld", fd);
}

static int io_uring(void)
{
	struct io_uring_params p;
	memset(&p, 0, sizeof p);
	long fd = syscall(SYS_io_uring_setup, 4, &p);
	return fd < 0 ? denied("io_uring_setup") : ok("ring fd %ld", fd);
}

static int add_key(void)
{
	long id = syscall(SYS_add_key, "user", "moat-attack", "x", 1, KEY_SPEC_PROCESS_KEYRING);
	return id < 0 ? denied("add_key(user, process keyring)") : ok("key %ld", id);
}

static int keyctl(void)
{
	long id = syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, "moat-attack");
	return id < 0 ? denied("keyctl(KEYCTL_JOIN_SESSION_KEYRING)") : ok("keyring %ld", id);
}

static int userfaultfd(void)
{
	long fd = syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
	return fd < 0 ? denied("userfaultfd(UFFD_USER_MODE_ONLY)") : ok("fd %ld", fd);
}

static int write_file(const char *path, const char *data, size_t len)
{
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		return -1;
	ssize_t n = write(fd, data, len);
	int e = errno;
	close(fd);
	errno = e;
	return n < 0 ? -1 : 0;
}

/* Unshares a user namespace and maps its uid/gid 0 to the caller's ids. Returns NULL, or the
 * step that failed (errno set). */
static const char *userns_root(void)
{
	uid_t uid = getuid();
	gid_t gid = getgid();
	if (unshare(CLONE_NEWUSER) < 0)
		return "unshare(CLONE_NEWUSER)";
	char buf[64];
	int n = snprintf(buf, sizeof buf, "0 %d 1\n", uid);
	if (write_file("/proc/self/uid_map", buf, n) < 0)
		return "write /proc/self/uid_map";
	if (write_file("/proc/self/setgroups", "deny", 4) < 0 && errno != ENOENT)
		return "write /proc/self/setgroups";
	n = snprintf(buf, sizeof buf, "0 %d 1\n", gid);
	if (write_file("/proc/self/gid_map", buf, n) < 0)
		return "write /proc/self/gid_map";
	return NULL;
}

/* unshare a user (+mount) namespace, become its root, mount a tmpfs in it. */
static int userns_mount(void)
{
	const char *step = userns_root();
	if (step)
		return denied(step);
	if (unshare(CLONE_NEWNS) < 0)
		return denied("unshare(CLONE_NEWNS) in the new user namespace");
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return denied("mount --make-rprivate / in the new user namespace");
	if (mount("moat-attack", "/tmp", "tmpfs", 0, "size=1m") < 0)
		return denied("mount tmpfs on /tmp in the new user namespace");
	return ok("mounted a tmpfs on /tmp as root of a new user namespace");
}

/* Writes the header of one nfnetlink message (with its nfgenmsg) at AT, which is zeroed; the
 * caller appends attributes and grows nlmsg_len, nft_batch sets the sequence number. */
static struct nlmsghdr *nfnl_msg(char *at, uint16_t type, uint16_t flags, uint8_t family,
				 uint16_t res_id)
{
	struct nlmsghdr *nh = (struct nlmsghdr *)at;
	struct nfgenmsg *nf = NLMSG_DATA(nh);
	nh->nlmsg_len = NLMSG_LENGTH(sizeof *nf);
	nh->nlmsg_type = type;
	nh->nlmsg_flags = flags;
	nf->nfgen_family = family;
	nf->version = NFNETLINK_V0;
	nf->res_id = res_id;
	return nh;
}

/* Sends MSG (one nf_tables message asking for an ack) on the NETLINK_NETFILTER socket S as a
 * batch (BATCH_BEGIN, MSG, BATCH_END) and reads the kernel's ack. Prints the result line:
 * `done` when acknowledged, the kernel's refusal at `refused_at`, EPROTO at `no_ack`. */
static int nft_batch(int s, const struct nlmsghdr *msg, const char *refused_at, const char *no_ack,
		     const char *done)
{
	char buf[512] __attribute__((aligned(NLMSG_ALIGNTO)));
	memset(buf, 0, sizeof buf);
	if (msg->nlmsg_len > sizeof buf - 2 * NLMSG_ALIGN(NLMSG_LENGTH(sizeof(struct nfgenmsg))))
		return denied_at(EMSGSIZE, "building the nftables batch");
	uint32_t seq = (uint32_t)time(NULL);
	size_t off = 0;
	struct nlmsghdr *nh = nfnl_msg(buf, NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, AF_UNSPEC,
				       htons(NFNL_SUBSYS_NFTABLES));
	nh->nlmsg_seq = seq;
	off += NLMSG_ALIGN(nh->nlmsg_len);
	nh = (struct nlmsghdr *)(buf + off);
	memcpy(nh, msg, msg->nlmsg_len);
	nh->nlmsg_seq = seq + 1;
	off += NLMSG_ALIGN(nh->nlmsg_len);
	nh = nfnl_msg(buf + off, NFNL_MSG_BATCH_END, NLM_F_REQUEST, AF_UNSPEC,
		      htons(NFNL_SUBSYS_NFTABLES));
	nh->nlmsg_seq = seq + 2;
	off += NLMSG_ALIGN(nh->nlmsg_len);

	struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
	if (sendto(s, buf, off, 0, (struct sockaddr *)&sa, sizeof sa) < 0)
		return denied("sendto(nftables batch)");
	char reply[4096];
	ssize_t n = recv(s, reply, sizeof reply, 0);
	if (n < 0)
		return denied("recv(nftables ack)");
	for (nh = (struct nlmsghdr *)reply; NLMSG_OK(nh, (size_t)n); nh = NLMSG_NEXT(nh, n)) {
		if (nh->nlmsg_type == NLMSG_ERROR) {
			struct nlmsgerr *err = NLMSG_DATA(nh);
			if (err->error != 0)
				return denied_at(-err->error, refused_at);
			return ok("%s", done);
		}
	}
	return denied_at(EPROTO, no_ack);
}

/* unshare a user + network namespace and create an nftables table in it. */
static int userns_nft(void)
{
	const char *step = userns_root();
	if (step)
		return denied(step);
	if (unshare(CLONE_NEWNET) < 0)
		return denied("unshare(CLONE_NEWNET) in the new user namespace");
	int s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
	if (s < 0)
		return denied("socket(AF_NETLINK, NETLINK_NETFILTER)");

	char msg[64] __attribute__((aligned(NLMSG_ALIGNTO)));
	memset(msg, 0, sizeof msg);
	struct nlmsghdr *nh = nfnl_msg(msg, (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE,
				       NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK, 1 /* NFPROTO_INET */, 0);
	const char name[] = "moat_attack";
	struct nlattr *a = (struct nlattr *)((char *)nh + NLMSG_ALIGN(nh->nlmsg_len));
	a->nla_type = NFTA_TABLE_NAME;
	a->nla_len = NLA_HDRLEN + sizeof name;
	memcpy((char *)a + NLA_HDRLEN, name, sizeof name);
	nh->nlmsg_len = NLMSG_ALIGN(nh->nlmsg_len) + NLA_ALIGN(a->nla_len);
	return nft_batch(s, nh, "NFT_MSG_NEWTABLE", "no ack for NFT_MSG_NEWTABLE",
			 "created nftables table inet moat_attack in a new user+network namespace");
}

static int child_exits(void *arg)
{
	(void)arg;
	_exit(0);
}

/* clone(2) with CLONE_NEWUSER (not unshare). */
static int clone_user(void)
{
	static char stack[64 * 1024];
	pid_t pid = clone(child_exits, stack + sizeof stack, CLONE_NEWUSER | SIGCHLD, NULL);
	if (pid < 0)
		return denied("clone(CLONE_NEWUSER)");
	waitpid(pid, NULL, 0);
	return ok("child %d ran in a new user namespace", pid);
}

/* After a fork-like system call that returned PID: the child exits at once, the parent reaps
 * it. Returns PID (negative, errno untouched, when the call failed). */
static long reaped(long pid)
{
	if (pid == 0)
		_exit(0);
	if (pid > 0)
		waitpid((pid_t)pid, NULL, 0);
	return pid;
}

/* clone3(2) with FLAGS and SIGCHLD, the child reaped at once. */
static long clone3_reaped(uint64_t flags)
{
	struct clone_args args;
	memset(&args, 0, sizeof args);
	args.flags = flags;
	args.exit_signal = SIGCHLD;
	return reaped(syscall(SYS_clone3, &args, sizeof args));
}

/* clone3(2) with CLONE_NEWUSER. */
static int clone3_user(void)
{
	long pid = clone3_reaped(CLONE_NEWUSER);
	if (pid < 0)
		return denied("clone3(CLONE_NEWUSER)");
	return ok("child %ld ran in a new user namespace", pid);
}

static int mount_tmpfs(const char *target)
{
	if (mount("moat-attack", target, "tmpfs", 0, "size=1m") < 0)
		return denied("mount(tmpfs)");
	return ok("mounted a tmpfs on %s", target);
}

static int sock(int domain, int type, int proto, const char *what)
{
	int s = socket(domain, type, proto);
	return s < 0 ? denied(what) : ok("socket fd %d", s);
}

/* An ICMP echo to ADDR through an ICMP datagram socket (what an unprivileged ping uses when
 * net.ipv4.ping_group_range admits the caller's group). */
static int ping_dgram(const char *addr)
{
	struct sockaddr_in to = {.sin_family = AF_INET};
	if (inet_pton(AF_INET, addr, &to.sin_addr) != 1)
		return denied_at(EINVAL, "inet_pton");
	int s = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
	if (s < 0)
		return denied("socket(AF_INET, SOCK_DGRAM, ICMP)");
	struct icmphdr req = {.type = ICMP_ECHO};
	req.un.echo.sequence = htons(1);
	if (sendto(s, &req, sizeof req, 0, (struct sockaddr *)&to, sizeof to) < 0)
		return denied("sendto(echo request)");
	struct pollfd p = {.fd = s, .events = POLLIN};
	if (poll(&p, 1, 3000) != 1)
		return denied_at(ETIMEDOUT, "waiting for the echo reply");
	struct icmphdr reply;
	if (recv(s, &reply, sizeof reply, 0) < 0)
		return denied("recv(echo reply)");
	if (reply.type != ICMP_ECHOREPLY)
		return denied_at(EPROTO, "reply is not an echo reply");
	return ok("echo reply from %s", addr);
}

static int klog(void)
{
	char buf[4096];
	int n = klogctl(3 /* SYSLOG_ACTION_READ_ALL */, buf, sizeof buf);
	return n < 0 ? denied("klogctl(SYSLOG_ACTION_READ_ALL)") : ok("read %d bytes of the kernel log", n);
}

/* mknod a block device MAJOR:MINOR at PATH, open it and read its first sector. */
static int mknod_read(const char *path, const char *major, const char *minor)
{
	dev_t dev = makedev(atoi(major), atoi(minor));
	unlink(path);
	if (mknod(path, S_IFBLK | 0600, dev) < 0)
		return denied("mknod");
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return denied("open of the new block device");
	char buf[512];
	ssize_t n = read(fd, buf, sizeof buf);
	if (n < 0)
		return denied("read of the new block device");
	return ok("read %zd bytes from block device %s:%s", n, major, minor);
}

static int read_file(const char *path)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return denied("open");
	char buf[4096];
	ssize_t n = read(fd, buf, sizeof buf);
	if (n < 0)
		return denied("read");
	return ok("read %zd bytes", n);
}

/* Writes DATA into PATH (one write, no truncation, no creation). */
static int write_data(const char *path, const char *data)
{
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		return denied("open for writing");
	ssize_t n = write(fd, data, strlen(data));
	if (n < 0)
		return denied("write");
	return ok("wrote %zd bytes", n);
}

/* Writes PATH's current contents back into it: a change only if the write is allowed,
 * and then a harmless one. */
static int rewrite(const char *path)
{
	char buf[4096];
	int fd = open(path, O_RDONLY);
	ssize_t n = 0;
	if (fd >= 0) {
		n = read(fd, buf, sizeof buf - 1);
		close(fd);
	}
	if (n < 0)
		n = 0;
	buf[n] = 0;
	fd = open(path, O_WRONLY);
	if (fd < 0)
		return denied("open for writing");
	if (write(fd, buf, n ? (size_t)n : 1) < 0)
		return denied("write");
	return ok("rewrote %zd bytes", n);
}

/* Opens /proc/self/exe for writing (and read-write); never writes. */
static int exe_write(void)
{
	int fd = open("/proc/self/exe", O_WRONLY);
	if (fd >= 0)
		return ok("opened /proc/self/exe for writing");
	int e = errno;
	fd = open("/proc/self/exe", O_RDWR);
	if (fd >= 0)
		return ok("opened /proc/self/exe read-write");
	(void)e;
	return denied("open(/proc/self/exe, O_WRONLY and O_RDWR)");
}

static int is_pid(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return 0;
	return 1;
}

/* True when `fd` is this container's own busybox or this program (not a runtime binary). */
static int own_file(int fd)
{
	struct stat st, mine;
	if (fstat(fd, &st) < 0)
		return 0;
	const char *own[] = {"/proc/self/exe", "/bin/busybox", "/pause"};
	for (size_t i = 0; i < sizeof own / sizeof *own; i++)
		if (stat(own[i], &mine) == 0 && st.st_dev == mine.st_dev && st.st_ino == mine.st_ino)
			return 1;
	return 0;
}

/* Whether the root or an open directory of process PID (a runtime process, not ours) can be
 * reached (CVE-2024-21626 leaked such a directory fd): returns what was reached, or NULL. */
static const char *reach(const char *pid)
{
	static char what[700];
	struct stat root, st;
	if (stat("/", &root) < 0)
		return NULL;
	char path[300];
	snprintf(path, sizeof path, "/proc/%s/root/", pid);
	if (stat(path, &st) == 0 && !(st.st_dev == root.st_dev && st.st_ino == root.st_ino)) {
		snprintf(what, sizeof what, "%s (another root)", path);
		return what;
	}
	char fddir[300];
	snprintf(fddir, sizeof fddir, "/proc/%s/fd", pid);
	DIR *d = opendir(fddir);
	if (!d)
		return NULL;
	struct dirent *f;
	while ((f = readdir(d))) {
		if (!is_pid(f->d_name))
			continue;
		char path[600];
		snprintf(path, sizeof path, "%s/%s", fddir, f->d_name);
		int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
		if (fd >= 0 && fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
			close(fd);
			closedir(d);
			snprintf(what, sizeof what, "%s (a directory)", path);
			return what;
		}
		if (fd >= 0)
			close(fd);
	}
	closedir(d);
	return NULL;
}

/* exe_race's verdict line when `reach` got into process PID: prints it and returns 1. */
static int reported_reach(const char *pid)
{
	const char *how = reach(pid);
	if (!how)
		return 0;
	printf("%s: ok REACHED %s of pid %s\n", mode, how, pid);
	return 1;
}

/*
 * CVE-2019-5736 and CVE-2024-21626: for SECONDS, watches every process of the pid namespace;
 * each one whose executable is not the container's own (a runtime process entering the
 * container) is opened through /proc/PID/exe, O_WRONLY directly and O_PATH (kept, reopened for
 * writing later, once the process is gone, as the original exploit did), and its root and open
 * directories are tried (see `reach`). Never writes. Prints what it saw.
 */
static int exe_race(int seconds)
{
	int kept[256];
	char kept_what[256][600];
	int nkept = 0;
	long scans = 0, foreign = 0, path_denied = 0, write_denied = 0;
	char seen[2048] = "";
	time_t end = time(NULL) + seconds;
	pid_t me = getpid();
	while (time(NULL) < end) {
		DIR *d = opendir("/proc");
		if (!d)
			return denied("opendir /proc");
		struct dirent *e;
		while ((e = readdir(d))) {
			if (!is_pid(e->d_name) || atoi(e->d_name) == me)
				continue;
			char link[300], target[4096];
			snprintf(link, sizeof link, "/proc/%s/exe", e->d_name);
			int p = open(link, O_PATH | O_CLOEXEC);
			if (p < 0) {
				if (errno != ENOENT)
					path_denied++;
				/* Non-dumpable processes refuse O_PATH: still try the rest. */
				if (reported_reach(e->d_name))
					return 0;
				int w = open(link, O_WRONLY);
				if (w >= 0 && !own_file(w)) {
					printf("%s: ok OPENED %s for writing\n", mode, link);
					return 0;
				}
				if (w >= 0)
					close(w);
				else
					write_denied++;
				continue;
			}
			if (own_file(p)) {
				close(p);
				continue;
			}
			/* A runtime process: its root, cwd and open files must be out of reach too. */
			if (reported_reach(e->d_name))
				return 0;
			char fdlink[64];
			snprintf(fdlink, sizeof fdlink, "/proc/self/fd/%d", p);
			ssize_t n = readlink(fdlink, target, sizeof target - 1);
			target[n > 0 ? n : 0] = 0;
			foreign++;
			if (strlen(seen) + strlen(target) + 4 < sizeof seen && !strstr(seen, target)) {
				strcat(seen, target);
				strcat(seen, "; ");
			}
			int w = open(link, O_WRONLY);
			if (w >= 0) {
				printf("%s: ok OPENED %s (-> %s) for writing\n", mode, link, target);
				return 0;
			}
			write_denied++;
			if (nkept < 256) {
				kept[nkept] = p;
				snprintf(kept_what[nkept], sizeof kept_what[nkept], "%s (-> %s)", link, target);
				nkept++;
			} else {
				close(p);
			}
		}
		closedir(d);
		for (int i = 0; i < nkept; i++) {
			char again[64];
			snprintf(again, sizeof again, "/proc/self/fd/%d", kept[i]);
			int w = open(again, O_WRONLY);
			if (w >= 0) {
				printf("%s: ok REOPENED %s for writing through an O_PATH fd\n", mode, kept_what[i]);
				return 0;
			}
		}
		scans++;
	}
	/* Counts: runtime processes seen (foreign), opens refused, O_PATH fds kept. */
	printf("%s: EACCES (no runtime binary could be opened for writing) at the end of the watch: "
	       "scans=%ld foreign=%ld path_denied=%ld write_denied=%ld kept=%d seen=[%s]\n",
	       mode, scans, foreign, path_denied, write_denied, nkept, seen);
	return 1;
}

/* Every open fd of every visible process (but this one): `PID FD -> TARGET`. */
static int fds(void)
{
	DIR *d = opendir("/proc");
	if (!d)
		return denied("opendir /proc");
	pid_t me = getpid();
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!is_pid(e->d_name) || atoi(e->d_name) == me)
			continue;
		char dir[300];
		snprintf(dir, sizeof dir, "/proc/%s/fd", e->d_name);
		DIR *fdd = opendir(dir);
		if (!fdd) {
			printf("fd %s - -> %s\n", e->d_name, strerrorname_np(errno));
			continue;
		}
		struct dirent *f;
		while ((f = readdir(fdd))) {
			if (!is_pid(f->d_name))
				continue;
			char link[600], target[4096];
			snprintf(link, sizeof link, "%s/%s", dir, f->d_name);
			ssize_t n = readlink(link, target, sizeof target - 1);
			target[n > 0 ? n : 0] = 0;
			struct stat st;
			const char *kind = stat(link, &st) < 0 ? "?" : S_ISDIR(st.st_mode) ? "dir" : "other";
			printf("fd %s %s -> %s (%s)\n", e->d_name, f->d_name, target, kind);
		}
		closedir(fdd);
	}
	closedir(d);
	return ok("listed");
}

/* For every visible process: is /proc/PID/root our own root? */
static int proc_roots(void)
{
	struct stat root;
	if (stat("/", &root) < 0)
		return denied("stat /");
	DIR *d = opendir("/proc");
	if (!d)
		return denied("opendir /proc");
	int other = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!is_pid(e->d_name))
			continue;
		char link[300];
		snprintf(link, sizeof link, "/proc/%s/root/", e->d_name);
		struct stat st;
		if (stat(link, &st) < 0) {
			printf("root %s %s\n", e->d_name, strerrorname_np(errno));
			continue;
		}
		int same = st.st_dev == root.st_dev && st.st_ino == root.st_ino;
		printf("root %s %s\n", e->d_name, same ? "same" : "DIFFERENT");
		other += !same;
	}
	closedir(d);
	return other ? ok("%d processes have another root", other) : denied_at(ENOENT, "no process with another root");
}

/* ===================== seal_seccomp (tests/tests/seal_seccomp.rs) =====================
 * The seccomp baseline as an allowlist: namespace flags, socket families, new syscalls,
 * the i386 ABI, terminal injection. Each mode makes the one call and reports it. */

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
#ifndef AF_ALG
#define AF_ALG 38
#endif
#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
/* lsm_list_modules(2), Linux 6.8: newer than the libseccomp of many nodes. */
#define SEAL_NR_LSM_LIST_MODULES 461

static const struct {
	const char *name;
	unsigned long flag;
} seal_ns_flags[] = {
	{"NEWUSER", CLONE_NEWUSER}, {"NEWNS", CLONE_NEWNS},         {"NEWNET", CLONE_NEWNET},
	{"NEWPID", CLONE_NEWPID},   {"NEWIPC", CLONE_NEWIPC},       {"NEWUTS", CLONE_NEWUTS},
	{"NEWCGROUP", CLONE_NEWCGROUP}, {"NEWTIME", CLONE_NEWTIME},
};

static int seal_ns_flag(const char *name, unsigned long *flag)
{
	for (size_t i = 0; i < sizeof seal_ns_flags / sizeof *seal_ns_flags; i++)
		if (!strcmp(name, seal_ns_flags[i].name)) {
			*flag = seal_ns_flags[i].flag;
			return 0;
		}
	return -1;
}

/* unshare(CLONE_<FLAG>) */
static int seal_unshare(const char *name)
{
	unsigned long flag;
	if (seal_ns_flag(name, &flag) < 0)
		return denied_at(EINVAL, "unknown namespace flag");
	if (unshare((int)flag) < 0)
		return denied("unshare");
	return ok("unshared CLONE_%s", name);
}

/* clone(CLONE_<FLAG> | SIGCHLD) through the raw syscall (glibc's clone wrapper may try clone3). */
static int seal_clone(const char *name)
{
	unsigned long flag;
	if (seal_ns_flag(name, &flag) < 0)
		return denied_at(EINVAL, "unknown namespace flag");
	long pid = reaped(syscall(SYS_clone, flag | SIGCHLD, 0, 0, 0, 0));
	if (pid < 0)
		return denied("clone");
	return ok("child %ld in a new CLONE_%s namespace", pid, name);
}

/* clone3 with no flags at all: a plain fork. */
static int seal_clone3(void)
{
	long pid = clone3_reaped(0);
	if (pid < 0)
		return denied("clone3");
	return ok("child %ld", pid);
}

/* With CAP_SYS_ADMIN: a new network namespace (no new user namespace) and nf_tables in it. */
static int seal_netns_nft(void)
{
	if (unshare(CLONE_NEWNET) < 0)
		return denied("unshare(CLONE_NEWNET)");
	int s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
	if (s < 0)
		return denied("socket(AF_NETLINK, NETLINK_NETFILTER) in the new network namespace");
	return ok("own network namespace with an nf_tables socket (fd %d)", s);
}

static int seal_socket(const char *family)
{
	if (!strcmp(family, "vsock"))
		return sock(AF_VSOCK, SOCK_STREAM, 0, "socket(AF_VSOCK, SOCK_STREAM)");
	if (!strcmp(family, "alg"))
		return sock(AF_ALG, SOCK_SEQPACKET, 0, "socket(AF_ALG, SOCK_SEQPACKET)");
	if (!strcmp(family, "unix"))
		return sock(AF_UNIX, SOCK_STREAM, 0, "socket(AF_UNIX, SOCK_STREAM)");
	if (!strcmp(family, "inet6"))
		return sock(AF_INET6, SOCK_STREAM, 0, "socket(AF_INET6, SOCK_STREAM)");
	if (!strcmp(family, "netlink-route"))
		return sock(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE, "socket(AF_NETLINK, NETLINK_ROUTE)");
	if (!strcmp(family, "netlink-netfilter"))
		return sock(AF_NETLINK, SOCK_RAW, NETLINK_NETFILTER,
			    "socket(AF_NETLINK, NETLINK_NETFILTER)");
	return denied_at(EINVAL, "unknown family");
}

/* syscall(NR) with zero arguments: for numbers no kernel has. */
static int seal_syscall(const char *nr)
{
	long r = syscall(atol(nr), 0, 0, 0, 0, 0, 0);
	return r < 0 ? denied("syscall") : ok("returned %ld", r);
}

/* lsm_list_modules(2): a syscall this kernel has that an old libseccomp does not name. */
static int seal_new_syscall(void)
{
	uint64_t ids[64];
	uint32_t size = sizeof ids;
	long n = syscall(SEAL_NR_LSM_LIST_MODULES, ids, &size, 0);
	return n < 0 ? denied("lsm_list_modules") : ok("%ld LSMs listed", n);
}

/* getpid through the i386 ABI (int 0x80, eax = 20) from this 64-bit program. */
static int seal_int80(void)
{
#if defined(__x86_64__)
	long r;
	__asm__ volatile("int $0x80" : "=a"(r) : "a"(20L) : "memory");
	if (r < 0)
		return denied_at((int)-r, "int 0x80 getpid");
	return ok("i386 getpid returned %ld", r);
#else
	return denied_at(ENOSYS, "int 0x80 exists on x86_64 only");
#endif
}

/* Pushes one character into the input of this process's terminal (stdin), as TIOCSTI does. */
static int seal_tiocsti(void)
{
	char c = '\n';
	if (!isatty(0))
		return denied_at(ENOTTY, "stdin is not a terminal");
	if (ioctl(0, TIOCSTI, &c) < 0)
		return denied("ioctl(TIOCSTI)");
	return ok("pushed a character into the terminal's input");
}

static int seal_main(const char *m, const char *a)
{
	if (!strcmp(m, "seal-unshare") && a)
		return seal_unshare(a);
	if (!strcmp(m, "seal-clone") && a)
		return seal_clone(a);
	if (!strcmp(m, "seal-clone3"))
		return seal_clone3();
	if (!strcmp(m, "seal-netns-nft"))
		return seal_netns_nft();
	if (!strcmp(m, "seal-socket") && a)
		return seal_socket(a);
	if (!strcmp(m, "seal-syscall") && a)
		return seal_syscall(a);
	if (!strcmp(m, "seal-new-syscall"))
		return seal_new_syscall();
	if (!strcmp(m, "seal-int80"))
		return seal_int80();
	if (!strcmp(m, "seal-tiocsti"))
		return seal_tiocsti();
	return -1;
}
/* =================== end of seal_seccomp =================== */

/* ============ egress and audit (tests/tests/egress.rs, tests/tests/audit.rs) ============ */
/* `nft flush ruleset` by hand, in the pod's own network namespace: one nf_tables batch with
 * NFT_MSG_DELTABLE for every family and no table name, which deletes every table (the egress
 * guard's `inet moat_egress` among them). ok when the kernel acknowledged it. */
static int egress_flush(void)
{
	int s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
	if (s < 0)
		return denied("socket(AF_NETLINK, NETLINK_NETFILTER)");
	char msg[32] __attribute__((aligned(NLMSG_ALIGNTO)));
	memset(msg, 0, sizeof msg);
	struct nlmsghdr *nh = nfnl_msg(msg, (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELTABLE,
				       NLM_F_REQUEST | NLM_F_ACK, AF_UNSPEC, 0);
	return nft_batch(s, nh, "NFT_MSG_DELTABLE (flush ruleset)", "no ack for NFT_MSG_DELTABLE",
			 "flushed every nftables table of the pod's network namespace");
}

/* N keyctl calls (refused by the baseline, answered by the shim's audit): ok with the time. */
static int audit_spam(long n)
{
	struct timespec a, b;
	long refused = 0;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (long i = 0; i < n; i++)
		if (syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0) < 0 && errno == EPERM)
			refused++;
	clock_gettime(CLOCK_MONOTONIC, &b);
	long ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
	return ok("%ld of %ld keyctl calls refused with EPERM in %ld ms", refused, n, ms);
}

static int egress_main(const char *m, const char *a)
{
	if (!strcmp(m, "egress-flush"))
		return egress_flush();
	if (!strcmp(m, "egress-audit-spam") && a)
		return audit_spam(atol(a));
	return -1;
}
/* =================== end of egress =================== */

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2) {
		fprintf(stderr, "usage: attack MODE [ARGS...]\n");
		return 2;
	}
	mode = argv[1];
	const char *a = argc > 2 ? argv[2] : NULL;
	const char *b = argc > 3 ? argv[3] : NULL;
	const char *c = argc > 4 ? argv[4] : NULL;
	if (!strcmp(mode, "ids")) {
		/* `ids SECONDS`: stay alive that long after printing, for the host to look. */
		int r = ids();
		if (a)
			sleep((unsigned)atoi(a));
		return r;
	}
	if (!strcmp(mode, "bpf"))
		return bpf_map();
	if (!strcmp(mode, "perf"))
		return perf();
	if (!strcmp(mode, "io_uring"))
		return io_uring();
	if (!strcmp(mode, "add_key"))
		return add_key();
	if (!strcmp(mode, "keyctl"))
		return keyctl();
	if (!strcmp(mode, "userfaultfd"))
		return userfaultfd();
	if (!strcmp(mode, "userns-mount"))
		return userns_mount();
	if (!strcmp(mode, "userns-nft"))
		return userns_nft();
	if (!strcmp(mode, "clone-user"))
		return clone_user();
	if (!strcmp(mode, "clone3-user"))
		return clone3_user();
	if (!strcmp(mode, "mount") && a)
		return mount_tmpfs(a);
	if (!strcmp(mode, "raw"))
		return sock(AF_INET, SOCK_RAW, IPPROTO_ICMP, "socket(AF_INET, SOCK_RAW)");
	if (!strcmp(mode, "packet"))
		return sock(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL), "socket(AF_PACKET, SOCK_RAW)");
	if (!strcmp(mode, "icmp-dgram"))
		return sock(AF_INET, SOCK_DGRAM, IPPROTO_ICMP, "socket(AF_INET, SOCK_DGRAM, ICMP)");
	if (!strcmp(mode, "ping-dgram") && a)
		return ping_dgram(a);
	if (!strcmp(mode, "klogctl"))
		return klog();
	if (!strcmp(mode, "mknod-read") && a && b && c)
		return mknod_read(a, b, c);
	if (!strcmp(mode, "read") && a)
		return read_file(a);
	if (!strcmp(mode, "write") && a && b)
		return write_data(a, b);
	if (!strcmp(mode, "rewrite") && a)
		return rewrite(a);
	if (!strcmp(mode, "exe-write"))
		return exe_write();
	if (!strcmp(mode, "exe-race") && a)
		return exe_race(atoi(a));
	if (!strcmp(mode, "fds"))
		return fds();
	if (!strcmp(mode, "proc-roots"))
		return proc_roots();
	if (!strncmp(mode, "egress-", 7)) {
		int r = egress_main(mode, a);
		if (r >= 0)
			return r;
	}
	if (!strncmp(mode, "seal-", 5)) {
		int r = seal_main(mode, a);
		if (r >= 0)
			return r;
	}
	fprintf(stderr, "attack: unknown mode or missing arguments: %s\n", mode);
	return 2;
}
