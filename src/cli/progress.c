/* SPDX-License-Identifier: MIT */
/* progress.c - the one-line progress bar.
 *
 * The rate is measured over the last few seconds of samples rather than
 * since the start, so the time left follows a transfer that speeds up or
 * slows down; the final line shows the average instead. */
#include "cli/progress.h"
#include "cli/human.h"
#include "echofs/util.h"

#include <stdio.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define REDRAW_NS (100LL * 1000 * 1000) /* at most 10 redraws a second */
#define SAMPLE_NS (250LL * 1000 * 1000)
#define DEFAULT_COLUMNS 80
#define MAX_COLUMNS 300
#define MIN_BAR 10

void efs_progress_init(struct efs_progress *p, bool enabled, const char *label, int64_t total)
{
	memset(p, 0, sizeof(*p));
	pthread_mutex_init(&p->lock, NULL);
	p->enabled = enabled;
	p->total = total;
	p->started_ns = efs_mono_ns();
	/* A label of one line: names with control characters are not drawn raw. */
	size_t n = 0;
	for (const char *c = label; *c && n + 1 < sizeof(p->label); c++)
		p->label[n++] = (unsigned char)*c < 0x20 || *c == 0x7f ? '?' : *c;
	p->label[n] = '\0';
}

void efs_progress_release(struct efs_progress *p)
{
	if (p)
		pthread_mutex_destroy(&p->lock);
}

static int terminal_columns(void)
{
	struct winsize ws;
	if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
		return EFS_MIN((int)ws.ws_col, MAX_COLUMNS);
	return DEFAULT_COLUMNS;
}

static void sample(struct efs_progress *p, int64_t now)
{
	unsigned last = (p->sample_next + EFS_PROGRESS_SAMPLES - 1) % EFS_PROGRESS_SAMPLES;
	if (p->sample_count > 0 && now - p->sample_ns[last] < SAMPLE_NS)
		return;
	p->sample_ns[p->sample_next] = now;
	p->sample_done[p->sample_next] = p->done;
	p->sample_next = (p->sample_next + 1) % EFS_PROGRESS_SAMPLES;
	if (p->sample_count < EFS_PROGRESS_SAMPLES)
		p->sample_count++;
}

/* Bytes per second over the samples kept, or since the start when there
 * are too few; 0 when nothing can be said yet. */
static double rate(const struct efs_progress *p, int64_t now, bool average)
{
	int64_t from_ns = p->started_ns, from_done = p->base;
	if (!average && p->sample_count >= 2) {
		unsigned oldest = (p->sample_next + EFS_PROGRESS_SAMPLES - p->sample_count) %
				  EFS_PROGRESS_SAMPLES;
		from_ns = p->sample_ns[oldest];
		from_done = p->sample_done[oldest];
	}
	double secs = (double)(now - from_ns) / 1e9;
	if (secs < 0.2)
		return 0;
	return (double)(p->done - from_done) / secs;
}

static void draw(struct efs_progress *p, int64_t now, bool final)
{
	char done_s[EFS_HUMAN_LEN], total_s[EFS_HUMAN_LEN], rate_s[EFS_HUMAN_LEN];
	char time_s[EFS_HUMAN_LEN], right[160], line[MAX_COLUMNS * 2];
	double bps = rate(p, now, final);
	int64_t seconds = -1;

	efs_human_bytes((uint64_t)EFS_MAX(p->done, 0), done_s, sizeof(done_s));
	efs_human_bytes((uint64_t)(bps > 0 ? bps : 0), rate_s, sizeof(rate_s));
	if (final)
		seconds = (now - p->started_ns) / 1000000000LL;
	else if (p->total >= 0 && bps > 0)
		seconds = (int64_t)((double)(p->total - p->done) / bps + 0.5);
	efs_human_duration(seconds, time_s, sizeof(time_s));
	char when[EFS_HUMAN_LEN + 8];
	if (final)
		snprintf(when, sizeof(when), "in %s", time_s);
	else if (seconds >= 0)
		snprintf(when, sizeof(when), "%s left", time_s);
	else
		snprintf(when, sizeof(when), "%s", p->total >= 0 ? time_s : "");
	/* Fixed widths: the bar does not jitter as the numbers change. */
	if (p->total >= 0) {
		efs_human_bytes((uint64_t)p->total, total_s, sizeof(total_s));
		snprintf(right, sizeof(right), " %*s/%s %10s/s  %-12s", (int)strlen(total_s),
			 done_s, total_s, rate_s, when);
	} else {
		snprintf(right, sizeof(right), " %10s %10s/s  %-12s", done_s, rate_s, when);
	}

	int columns = terminal_columns() - 1; /* never the last column: no wrap */
	int right_len = (int)strlen(right);
	int label_len = (int)strlen(p->label);
	int pos = 0;
	int room = columns - right_len;
	/* label, percentage and bar share what the numbers leave. */
	int pct_len = p->total >= 0 ? 5 : 0;
	int label_room = EFS_MIN(label_len, EFS_MAX(room - pct_len - MIN_BAR - 4, 0));
	label_room = EFS_MIN(label_room, 40);
	if (label_room > 0) {
		if (label_room < label_len && label_room > 3)
			pos += snprintf(line + pos, sizeof(line) - (size_t)pos, "%.*s...",
					label_room - 3, p->label);
		else
			pos += snprintf(line + pos, sizeof(line) - (size_t)pos, "%.*s", label_room,
					p->label);
		pos += snprintf(line + pos, sizeof(line) - (size_t)pos, " ");
	}
	if (p->total >= 0) {
		int pct = p->total > 0 ? (int)(p->done * 100 / p->total) : 100;
		pct = EFS_MIN(EFS_MAX(pct, 0), 100);
		pos += snprintf(line + pos, sizeof(line) - (size_t)pos, "%3d%% ", pct);
		int bar = columns - right_len - pos - 2;
		if (bar >= MIN_BAR) {
			int fill =
			    p->total > 0 ? (int)((double)p->done * bar / (double)p->total) : bar;
			fill = EFS_MIN(EFS_MAX(fill, 0), bar);
			line[pos++] = '[';
			for (int i = 0; i < bar; i++)
				line[pos++] = i < fill ? '=' : (i == fill ? '>' : ' ');
			line[pos++] = ']';
			line[pos] = '\0';
		}
	}
	if (pos + right_len <= columns)
		snprintf(line + pos, sizeof(line) - (size_t)pos, "%s", right);
	/* \r: back to the start; ESC[K: clear what a longer line left. */
	fprintf(stderr, "\r%s\x1b[K", line);
	fflush(stderr);
	p->drawn = true;
	p->last_draw_ns = now;
}

static void maybe_draw(struct efs_progress *p)
{
	int64_t now = efs_mono_ns();
	sample(p, now);
	if (now - p->last_draw_ns >= REDRAW_NS)
		draw(p, now, false);
}

void efs_progress_set(struct efs_progress *p, int64_t done)
{
	pthread_mutex_lock(&p->lock);
	p->done = done;
	p->base = done;
	p->started_ns = efs_mono_ns();
	p->sample_count = 0;
	if (p->enabled)
		maybe_draw(p);
	pthread_mutex_unlock(&p->lock);
}

void efs_progress_add(struct efs_progress *p, int64_t delta)
{
	pthread_mutex_lock(&p->lock);
	p->done += delta;
	if (p->enabled)
		maybe_draw(p);
	pthread_mutex_unlock(&p->lock);
}

void efs_progress_tick(struct efs_progress *p)
{
	pthread_mutex_lock(&p->lock);
	if (p->enabled)
		maybe_draw(p);
	pthread_mutex_unlock(&p->lock);
}

void efs_progress_end(struct efs_progress *p, bool completed)
{
	pthread_mutex_lock(&p->lock);
	if (p->enabled && (completed || p->drawn)) {
		if (completed)
			draw(p, efs_mono_ns(), true);
		fputc('\n', stderr);
		fflush(stderr);
	}
	p->drawn = false;
	p->enabled = false; /* nothing more on this line */
	pthread_mutex_unlock(&p->lock);
}
