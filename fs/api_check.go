package fs

import gofs "github.com/hanwen/go-fuse/v2/fs"

// The operations each node and handle implements, checked at compile time.
// Anything not listed gets go-fuse's read-only default.
var (
	_ gofs.NodeGetattrer     = (*dirNode)(nil)
	_ gofs.NodeStatfser      = (*dirNode)(nil)
	_ gofs.NodeUnlinker      = (*dirNode)(nil) // EROFS, as every change below
	_ gofs.NodeRmdirer       = (*dirNode)(nil)
	_ gofs.NodeRenamer       = (*dirNode)(nil)
	_ gofs.NodeMkdirer       = (*dirNode)(nil)
	_ gofs.NodeMknoder       = (*dirNode)(nil)
	_ gofs.NodeLinker        = (*dirNode)(nil)
	_ gofs.NodeSymlinker     = (*dirNode)(nil)
	_ gofs.NodeCreater       = (*dirNode)(nil)
	_ gofs.NodeSetattrer     = (*dirNode)(nil)
	_ gofs.NodeSetxattrer    = (*dirNode)(nil)
	_ gofs.NodeRemovexattrer = (*dirNode)(nil)

	_ gofs.NodeOnAdder   = (*rootNode)(nil)
	_ gofs.NodeGetattrer = (*rootNode)(nil)
	_ gofs.NodeStatfser  = (*rootNode)(nil)

	_ gofs.NodeGetattrer     = (*fileNode)(nil)
	_ gofs.NodeOpener        = (*fileNode)(nil)
	_ gofs.NodeReader        = (*fileNode)(nil)
	_ gofs.NodeFlusher       = (*fileNode)(nil) // counts; FOPEN_NOFLUSH spares the request
	_ gofs.NodeGetxattrer    = (*fileNode)(nil)
	_ gofs.NodeListxattrer   = (*fileNode)(nil)
	_ gofs.NodeStatfser      = (*fileNode)(nil)
	_ gofs.NodeSetattrer     = (*fileNode)(nil) // EROFS
	_ gofs.NodeSetxattrer    = (*fileNode)(nil) // EROFS
	_ gofs.NodeRemovexattrer = (*fileNode)(nil) // EROFS

	_ gofs.FileReleaser = (*handle)(nil)

	_ gofs.FileReleaser        = (*passthroughHandle)(nil)
	_ gofs.FilePassthroughFder = (*passthroughHandle)(nil)
)
