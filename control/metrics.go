package control

import (
	"bufio"
	"io"
	"strconv"
	"strings"
)

// priorities are the label values of ferry_fetched_bytes_total, always all
// present so that rates over them work from the first scrape.
var priorities = []string{"foreground", "high", "normal", "low"}

// WriteMetrics writes st in the Prometheus text exposition format (0.0.4).
// The metric names are part of ferry's stable interface (README.md).
func WriteMetrics(w io.Writer, st Status) {
	m := &metricWriter{w: bufio.NewWriter(w)}
	defer m.w.Flush()

	m.family("ferry_info", "gauge", "The mount this process serves (always 1).")
	m.sample("ferry_info", []string{"mountpoint", st.Mountpoint, "cache_dir", st.CacheDir}, 1)

	files := map[string]int{"remote": 0, "partial": 0, "complete": 0, "failed": 0}
	fetched := map[string]int64{}
	var queued, queuedBytes, restarts, open int64
	for _, t := range st.Transfers {
		files[t.State]++
		fetched[t.Priority] += t.Fetched
		restarts += int64(t.Restarts)
		open += int64(t.Open)
		if t.State != "complete" && t.State != "failed" && !t.Paused {
			queued++
			if t.Size >= 0 {
				queuedBytes += max(0, t.Size-t.Local)
			}
		}
	}
	m.family("ferry_files", "gauge", "Manifest files by transfer state.")
	for _, s := range []string{"remote", "partial", "complete", "failed"} {
		m.sample("ferry_files", []string{"state", s}, float64(files[s]))
	}
	m.gauge("ferry_files_paused", "Files whose background transfer is held (pause, cancel, evict).", float64(st.Totals.Paused))
	m.gauge("ferry_files_pinned", "Files pinned: kept local and filled first.", float64(st.Totals.Pinned))
	m.gauge("ferry_files_retrying", "Files whose last request failed and that are being retried.", float64(st.Totals.Retrying))
	m.gauge("ferry_open_handles", "Open handles on manifest files.", float64(open))
	m.gauge("ferry_queued_files", "Files background fill still has to fetch (not complete, failed or paused).", float64(queued))
	m.gauge("ferry_queued_bytes", "Bytes background fill still has to fetch.", float64(queuedBytes))
	m.gauge("ferry_size_bytes", "Bytes of the manifest files whose size is known.", float64(st.Totals.Size))
	m.gauge("ferry_local_bytes", "Bytes of the manifest files held locally.", float64(st.Totals.Local))
	m.gauge("ferry_transfer_rate_bytes_per_second", "Bytes per second received over the last seconds, all files.", st.Totals.Rate)

	m.family("ferry_fetched_bytes_total", "counter", "Bytes received from origins since the mount, by the file's priority now.")
	for _, p := range priorities {
		m.sample("ferry_fetched_bytes_total", []string{"priority", p}, float64(fetched[p]))
	}
	m.counter("ferry_restarts_total", "Times a remote file changed and was fetched again.", float64(restarts))
	m.counter("ferry_fuse_reads_total", "Read requests served by this process (passthrough reads excluded).", float64(st.FUSEReads))

	m.gauge("ferry_cache_local_bytes", "Bytes of blocks in the cache directory (all files, also ones not in the manifest).", float64(st.Cache.LocalBytes))
	m.gauge("ferry_cache_limit_bytes", "Most bytes of blocks the cache may hold now.", float64(st.Cache.Limit))
	m.gauge("ferry_cache_pinned_bytes", "Bytes of pinned files.", float64(st.Cache.PinnedBytes))
	m.counter("ferry_cache_evicted_bytes_total", "Bytes evicted since the mount.", float64(st.Cache.EvictedBytes))
	m.gauge("ferry_cache_disk_full", "1 while the disk is full and background fill waits.", boolValue(st.Cache.DiskFull))

	uploads := map[string]int{"writing": 0, "queued": 0, "uploading": 0, "sent": 0, "failed": 0}
	for _, u := range st.Uploads {
		uploads[u.State]++
	}
	m.family("ferry_uploads", "gauge", "Outbox files by upload state.")
	for _, s := range []string{"writing", "queued", "uploading", "sent", "failed"} {
		m.sample("ferry_uploads", []string{"state", s}, float64(uploads[s]))
	}
	m.gauge("ferry_upload_bytes", "Bytes of the outbox files in the queue.", float64(st.Totals.UploadSize))
	m.gauge("ferry_upload_sent_bytes", "Bytes of them the servers have taken.", float64(st.Totals.UploadSent))
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

type metricWriter struct {
	w *bufio.Writer
}

func (m *metricWriter) family(name, typ, help string) {
	m.w.WriteString("# HELP " + name + " " + escapeHelp(help) + "\n")
	m.w.WriteString("# TYPE " + name + " " + typ + "\n")
}

func (m *metricWriter) gauge(name, help string, v float64) {
	m.family(name, "gauge", help)
	m.sample(name, nil, v)
}

func (m *metricWriter) counter(name, help string, v float64) {
	m.family(name, "counter", help)
	m.sample(name, nil, v)
}

// sample writes one line; labels are name, value pairs.
func (m *metricWriter) sample(name string, labels []string, v float64) {
	m.w.WriteString(name)
	if len(labels) > 0 {
		m.w.WriteByte('{')
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				m.w.WriteByte(',')
			}
			m.w.WriteString(labels[i] + `="` + escapeLabel(labels[i+1]) + `"`)
		}
		m.w.WriteByte('}')
	}
	m.w.WriteByte(' ')
	m.w.WriteString(strconv.FormatFloat(v, 'f', -1, 64))
	m.w.WriteByte('\n')
}

var (
	labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
)

func escapeLabel(s string) string { return labelEscaper.Replace(s) }
func escapeHelp(s string) string  { return helpEscaper.Replace(s) }
