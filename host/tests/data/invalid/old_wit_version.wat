;; A component built against plume:pipeline@0.1.0, whose batches were lists of
;; `value` variants: it names the old package among its imports.
(component
  (import "plume:pipeline/host@0.1.0" (instance))
)
