"""The scheduler: where should each task go? Feasibility (`feasible`), ranking (`rank`)
and placing a batch of requests on a cluster's free capacity (`place`). Pure: nothing
here does I/O."""
