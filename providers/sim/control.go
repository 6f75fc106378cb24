package sim

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/txswitch/txswitch/providers/wire"
	"go.uber.org/zap"
)

func (s *Server) handleGetBehaviour(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Behaviour())
}

func (s *Server) handleSetBehaviour(w http.ResponseWriter, r *http.Request) {
	var b Behaviour
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxControlBody))
	// Strict: a misspelt fault must not silently become "no fault".
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		writeError(w, http.StatusBadRequest, wire.CodeInvalidRequest, fmt.Sprintf("decode behaviour: %v", err))
		return
	}
	if err := b.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, wire.CodeInvalidRequest, err.Error())
		return
	}
	if o := b.Outage; o != nil && o.Mode == OutageRefuse {
		if o.ForMillis == 0 {
			writeError(w, http.StatusBadRequest, wire.CodeInvalidRequest,
				"a refuse outage set over HTTP needs for_ms: the control endpoint goes down with the listener")
			return
		}
		// Answer first: installing the outage closes this very connection.
		w.Header().Set("Connection", "close")
		writeJSON(w, http.StatusOK, b)
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		go func() {
			if err := s.SetBehaviour(b); err != nil {
				s.log.Error("install refuse outage", zap.Error(err))
			}
		}()
		return
	}
	if err := s.SetBehaviour(b); err != nil {
		writeError(w, http.StatusBadRequest, wire.CodeInvalidRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, b)
}

func (s *Server) handleResetBehaviour(w http.ResponseWriter, _ *http.Request) {
	s.ResetBehaviour()
	writeJSON(w, http.StatusOK, s.Behaviour())
}

func (s *Server) handleStats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Stats())
}

// LedgerResponse is the body of GET /ledger.
type LedgerResponse struct {
	Entries []LedgerEntry `json:"entries"`
}

func (s *Server) handleLedger(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, LedgerResponse{Entries: s.LedgerFor(r.URL.Query().Get("payment_id"))})
}

func (s *Server) handleTotals(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("payment_id")
	if id == "" {
		writeError(w, http.StatusBadRequest, wire.CodeInvalidRequest, "payment_id is required")
		return
	}
	writeJSON(w, http.StatusOK, s.Totals(id))
}

func (s *Server) handleRedirect(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "Simulated bank page for "+r.PathValue("ref")+". The bank completes the payment on its own.\n")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only plain data types are written here; this is a programming error.
		http.Error(w, `{"error":{"code":"internal","message":"encode answer"}}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, wire.ErrorBody{Error: wire.ErrorDetail{Code: code, Message: msg}})
}

// writeUnavailable is the PSP saying it did not process the request.
func writeUnavailable(w http.ResponseWriter, code, msg string) {
	w.Header().Set(wire.HeaderProcessed, "false")
	w.Header().Set("Retry-After", "1")
	writeError(w, http.StatusServiceUnavailable, code, msg)
}
