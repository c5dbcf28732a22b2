// Package quota serves the quotas of istio.mixer.v1 Check requests from
// in-memory rolling windows.
//
// Each configured quota has a maximum amount per window; the window is
// divided into ticks, and an allocation is charged to the current tick and
// counted until its tick leaves the window, so capacity frees up gradually
// rather than all at once. Allocations are kept per dimension key: the
// values of the quota's dimension attributes in the request (for example
// one window per source.principal and request.path). Memory is bounded by
// max_keys per quota: idle windows are evicted first, and when the table is
// still full, new keys share one overflow window.
//
// Requests enter through (*Manager).Alloc with the request's attribute bag
// and leave as mixerv1.CheckResponse_QuotaResult values built by Result.
package quota
