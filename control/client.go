package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"syscall"
)

// Client talks to one mount's control socket. Safe for concurrent use.
type Client struct {
	path string
	hc   *http.Client
}

// Dial checks that path is a control socket of this user and returns a
// client for it; it does not connect yet. An error wraps ErrNotRunning when
// there is no socket, ErrForeign when it belongs to another user.
func Dial(path string) (*Client, error) {
	if err := checkSocket(path); err != nil {
		return nil, err
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialPath(ctx, path)
		},
		DisableCompression: true,
		MaxIdleConns:       1,
	}
	return &Client{path: path, hc: &http.Client{Transport: tr}}, nil
}

// Path is the socket's path.
func (c *Client) Path() string { return c.path }

// Close drops the idle connection.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Status asks for a snapshot.
func (c *Client) Status(ctx context.Context, q Query) (Status, error) {
	v := url.Values{}
	for _, p := range q.Paths {
		v.Add("path", p)
	}
	if q.Active {
		v.Set("active", "1")
	}
	if q.NoFiles {
		v.Set("files", "0")
	}
	var st Status
	err := c.do(ctx, http.MethodGet, "/v1/status?"+v.Encode(), nil, &st)
	return st, err
}

// Apply runs op on the paths of req.
func (c *Client) Apply(ctx context.Context, op Op, req Request) ([]Result, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	var resp Response
	if err := c.do(ctx, http.MethodPost, "/v1/files/"+string(op), body, &resp); err != nil {
		return nil, err
	}
	if len(resp.Results) != len(req.Paths) {
		return nil, fmt.Errorf("control: %d results for %d paths", len(resp.Results), len(req.Paths))
	}
	return resp.Results, nil
}

// Metrics returns the Prometheus text of GET /metrics.
func (c *Client) Metrics(ctx context.Context) (string, error) {
	var buf bytes.Buffer
	err := c.do(ctx, http.MethodGet, "/metrics", nil, &buf)
	return buf.String(), err
}

// do sends one request and decodes the answer into out (a *bytes.Buffer
// takes the raw body).
func (c *Client) do(ctx context.Context, method, target string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://ferry"+target, rd)
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("%w: nothing listens on %s", ErrNotRunning, c.path)
		}
		return fmt.Errorf("control: %s: %w", c.path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<30))
	if err != nil {
		return fmt.Errorf("control: reading the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var eb errorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error != "" {
			return fmt.Errorf("control: %s", eb.Error)
		}
		return fmt.Errorf("control: %s %s: %s", method, target, resp.Status)
	}
	if buf, ok := out.(*bytes.Buffer); ok {
		buf.Write(data)
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("control: bad answer: %w", err)
	}
	return nil
}
