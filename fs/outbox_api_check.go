package fs

import gofs "github.com/hanwen/go-fuse/v2/fs"

// The operations the outbox's nodes implement, checked at compile time.
var (
	_ gofs.NodeGetattrer     = (*outboxDir)(nil)
	_ gofs.NodeSetattrer     = (*outboxDir)(nil)
	_ gofs.NodeStatfser      = (*outboxDir)(nil)
	_ gofs.NodeLookuper      = (*outboxDir)(nil)
	_ gofs.NodeReaddirer     = (*outboxDir)(nil)
	_ gofs.NodeMkdirer       = (*outboxDir)(nil)
	_ gofs.NodeCreater       = (*outboxDir)(nil)
	_ gofs.NodeUnlinker      = (*outboxDir)(nil)
	_ gofs.NodeRmdirer       = (*outboxDir)(nil)
	_ gofs.NodeRenamer       = (*outboxDir)(nil)
	_ gofs.NodeSymlinker     = (*outboxDir)(nil) // EPERM
	_ gofs.NodeLinker        = (*outboxDir)(nil) // EPERM
	_ gofs.NodeMknoder       = (*outboxDir)(nil) // EPERM
	_ gofs.NodeGetxattrer    = (*outboxDir)(nil)
	_ gofs.NodeListxattrer   = (*outboxDir)(nil)
	_ gofs.NodeSetxattrer    = (*outboxDir)(nil) // ENOTSUP
	_ gofs.NodeRemovexattrer = (*outboxDir)(nil) // ENOTSUP

	_ gofs.NodeGetattrer     = (*outboxFile)(nil)
	_ gofs.NodeSetattrer     = (*outboxFile)(nil)
	_ gofs.NodeStatfser      = (*outboxFile)(nil)
	_ gofs.NodeOpener        = (*outboxFile)(nil)
	_ gofs.NodeReader        = (*outboxFile)(nil)
	_ gofs.NodeWriter        = (*outboxFile)(nil)
	_ gofs.NodeFsyncer       = (*outboxFile)(nil)
	_ gofs.NodeFlusher       = (*outboxFile)(nil)
	_ gofs.NodeReleaser      = (*outboxFile)(nil)
	_ gofs.NodeGetxattrer    = (*outboxFile)(nil)
	_ gofs.NodeListxattrer   = (*outboxFile)(nil)
	_ gofs.NodeSetxattrer    = (*outboxFile)(nil) // EPERM for user.ferry.*, else ENOTSUP
	_ gofs.NodeRemovexattrer = (*outboxFile)(nil)

	_ gofs.FilePassthroughFder = (*outboxPassthroughHandle)(nil)
)
